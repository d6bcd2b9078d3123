"""``python -m bench [--quick] [benchmark ...]``: run the benchmarks and print their figures."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from bench import envelope, kraken, producer, scraper, spark
from shared.embedded.process import ChildFailed
from shared.settings import ConfigError

BENCHMARKS: dict[str, tuple[str, Callable[..., None]]] = {
    "envelope": ("envelope encode/decode rates per topic, msgspec against pydantic", envelope.main),
    "producer": (
        "producer throughput and send-to-ack latency against an embedded broker",
        producer.main,
    ),
    "kraken": (
        "Kraken trade path: trades/s on one core and frame-to-ack latency at 2,000 trades/s",
        kraken.main,
    ),
    "scraper": (
        "scraper article path: articles/s through extract, sentiment, mentions on 2 cores",
        scraper.main,
    ),
    "spark": (
        "Spark ingestion job: Kafka to PostgreSQL rows/s and event-to-row latency at 2,000/s",
        spark.main,
    ),
}
LIBRARIES = ("msgspec", "pydantic", "aiokafka", "prometheus-client", "pyspark")


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<10} {about}" for name, (about, _) in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Print CRYPTO VIZ benchmark figures. Nothing is asserted about time.",
        epilog=f"benchmarks (all of them when none is named):\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("benchmarks", nargs="*", metavar="benchmark", help="which ones to run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs (about 25 s in all) for a smoke test; the figures are noisier",
    )
    return parser


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _machine() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = f"{os.cpu_count()} CPUs" + (f" ({usable} usable)" if usable != os.cpu_count() else "")
    libraries = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return [
        f"Python {platform.python_version()} ({platform.python_implementation()}),"
        f" {platform.system()} {platform.machine()}, {cpus}",
        libraries,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names: list[str] = args.benchmarks or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")

    mode = "quick" if args.quick else "full"
    print("CRYPTO VIZ benchmarks", f"({mode} run: {', '.join(names)})")
    for line in _machine():
        print(line)
    started = time.perf_counter()
    failed = []
    for name in names:
        print(flush=True)
        _, run = BENCHMARKS[name]
        try:
            run(quick=args.quick)
        except (ConfigError, ChildFailed) as exc:
            # The embedded broker is missing or would not start: say why, run the others.
            print(f"{name}: cannot run: {exc}", file=sys.stderr)
            failed.append(name)
        except KeyboardInterrupt:
            # The benchmark's own cleanup (broker stop, temp dir) has run by now.
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
    print()
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
