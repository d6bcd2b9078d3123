"""The Spark jobs, each a script ``spark-submit`` runs, and the registry the wrapper reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.envelope import PAYLOADS
from shared.topics import CONSUMER_GROUPS


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    module: str  # the script spark-submit runs, as a module path
    group: str  # the seed's consumer group for this job
    topics: tuple[str, ...]
    description: str


JOBS: Final = {
    job.name: job
    for job in (
        Job(
            name="ingestion",
            module="services.spark.jobs.kafka_to_timescale",
            group=CONSUMER_GROUPS["ingestion"],
            topics=tuple(PAYLOADS),
            description="kafka_to_timescale: the four topics into their tables",
        ),
    )
}
