"""The operations CLI (``cryptoviz``) and the embedded infrastructure daemons it runs."""
