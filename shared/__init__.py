"""CRYPTO VIZ shared library: the wire envelope, the topic registry, the Kafka bus and the daemon
runtime that every service uses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryptoviz")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
