"""CRYPTO VIZ services: the daemons (kraken, scraper, spark) and the operations CLI."""
