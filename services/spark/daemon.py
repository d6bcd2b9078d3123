"""Entry point of ``cryptoviz-spark <job>``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final, NoReturn

from prometheus_client import CollectorRegistry

from services.spark.jobs import JOBS
from services.spark.settings import SparkSettings
from services.spark.wrapper import SparkJobService
from shared.runtime import build_parser
from shared.runtime import main as run_daemon
from shared.topics import CONSUMER_GROUPS

PROG: Final = "cryptoviz-spark"
DESCRIPTION: Final = (
    "Runs one Spark job under supervision: spark-submit as a child process group, its output as "
    "structured logs, its progress as metrics, restarts with backoff, a graceful stop."
)
# Jobs of the seed that later work builds; naming one is not a typo, so it gets its own message.
PLANNED: Final = {"analytics": f"sentiment_prediction_job (group {CONSUMER_GROUPS['analytics']})"}
EXIT_UNAVAILABLE: Final = 69


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser(PROG, DESCRIPTION, SparkSettings)
    parser.add_argument(
        "job",
        choices=sorted([*JOBS, *PLANNED]),
        help="; ".join(f"{name}: {job.description}" for name, job in JOBS.items()),
    )
    name = parser.parse_args(argv).job
    if name in PLANNED:
        print(f"{PROG}: job {name} ({PLANNED[name]}) is not implemented yet", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)
    job = JOBS[name]

    def service(settings: SparkSettings, registry: CollectorRegistry) -> SparkJobService:
        return SparkJobService(settings, registry, job)

    run_daemon(service, SparkSettings, prog=PROG, description=DESCRIPTION, argv=argv, parser=parser)
