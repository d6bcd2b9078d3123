"""Benchmarks that print figures: envelope encode/decode rates and producer throughput/latency.

Run ``python -m bench`` from the repository root (``make bench``), or name the ones to run:
``python -m bench envelope``. Nothing here asserts anything about time; the figures are for
people comparing runs on the same machine.
"""
