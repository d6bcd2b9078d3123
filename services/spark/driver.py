"""What every job's driver does: settings and logs, the Spark session, the Kafka stream, and the
query's life (progress lines for the wrapper, a graceful stop between batches).

This module runs inside ``spark-submit``'s Python driver, not in the wrapper daemon.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog
from pyspark.errors import StreamingQueryException

from services.spark.group_offsets import committed_offsets, reconcile
from services.spark.jobs import JOBS, Job
from services.spark.kafka_source import NAME as PYTHON_SOURCE
from services.spark.kafka_source import KafkaDataSource
from services.spark.settings import STOP_FILE_VARIABLE, SparkSettings
from shared.kafka_config import librdkafka_config
from shared.logs import bind, configure_logging
from shared.settings import ConfigError, load_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = structlog.get_logger(__name__)

NATIVE_PROVIDER: Final = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
# How long a stop request waits for the running batch to finish before stopping the query.
STOP_GRACE_S: Final = 10.0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = ConfigError.exit_code


def load(job_name: str) -> tuple[SparkSettings, Job]:
    try:
        settings = load_settings(SparkSettings)
    except ConfigError as exc:
        print(f"cryptoviz-spark job {job_name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    # The wrapper reads this output line by line: JSON always, whatever the terminal.
    configure_logging(settings.log_level, "json")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    bind(job=job_name)
    return settings, JOBS[job_name]


def session(job: Job) -> SparkSession:
    from pyspark.sql import SparkSession  # noqa: PLC0415 - the spark extra

    # Spark's own log level is spark.log.level, which the wrapper sets.
    return (
        SparkSession.builder.appName(f"cryptoviz-{job.name}")
        # No shuffles in these plans; the default 200 partitions would only add empty tasks.
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.streaming.noDataProgressEventInterval", "5s")
        .getOrCreate()
    )


def native_kafka_available(spark: SparkSession) -> bool:
    """Whether Spark's own kafka source (its connector jars) is on the classpath."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        jvm.java.lang.Class.forName(NATIVE_PROVIDER)
    except Exception:  # noqa: BLE001 - py4j wraps ClassNotFoundException
        return False
    return True


def starting_offsets(settings: SparkSettings, job: Job, checkpoint: Path) -> str:
    """The startingOffsets option: the group's committed offsets where it has them, the starting
    strategy elsewhere (used by Spark only when there is no checkpoint; see group_offsets)."""
    config = librdkafka_config(settings)
    group = committed_offsets(config, job.group, job.topics)
    reconcile(checkpoint, group, job.group)
    if not group:
        return settings.spark_starting_offsets
    fallback = -2 if settings.spark_starting_offsets == "earliest" else -1
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    metadata = AdminClient(dict(config)).list_topics(timeout=10)
    spec = {
        topic: {
            str(p): group.get(topic, {}).get(str(p), fallback)
            for p in sorted(metadata.topics[topic].partitions)
        }
        for topic in job.topics
        if topic in metadata.topics
    }
    return json.dumps(spec)


def kafka_stream(
    spark: SparkSession, settings: SparkSettings, job: Job, checkpoint: Path
) -> DataFrame:
    """The job's topics as a stream with the Kafka source's columns, from whichever source."""
    choice = settings.spark_kafka_source
    native = choice == "native" or (choice == "auto" and native_kafka_available(spark))
    start = starting_offsets(settings, job, checkpoint)
    common = {
        "subscribe": ",".join(job.topics),
        "startingOffsets": start,
        "maxOffsetsPerTrigger": str(settings.spark_max_offsets_per_trigger),
        # One task per core at least: the seed's topics have one partition each.
        "minPartitions": str(spark.sparkContext.defaultParallelism),
    }
    if native:
        options = {
            **common,
            "kafka.bootstrap.servers": settings.kafka_bootstrap,
            "kafka.security.protocol": settings.kafka_security_protocol,
            "includeHeaders": "true",
            # A broker that lost a log (retention, a recreated topic) is logged, not fatal: the
            # Python source does the same.
            "failOnDataLoss": "false",
        }
        log.info("kafka source", source="native", topics=job.topics, starting=start)
        return spark.readStream.format("kafka").options(**options).load()
    spark.dataSource.register(KafkaDataSource)
    options = {**common, **{f"kafka.{k}": str(v) for k, v in librdkafka_config(settings).items()}}
    log.info("kafka source", source="python", topics=job.topics, starting=start)
    return spark.readStream.format(PYTHON_SOURCE).options(**options).load()


class StopRequest:
    """The wrapper asks for a stop by creating a file: a signal would reach the JVM too."""

    def __init__(self) -> None:
        name = os.environ.get(STOP_FILE_VARIABLE)
        self.path = Path(name) if name else None

    def __call__(self) -> bool:
        return self.path is not None and self.path.exists()


def run_query(
    query: StreamingQuery,
    stop_requested: Callable[[], bool],
) -> int:
    """Report progress until the query ends or a stop is requested; return the exit code."""
    last_reported: str | None = None
    while query.isActive:
        for progress in query.recentProgress:
            stamp = str(progress.get("timestamp"))
            if last_reported is not None and stamp <= last_reported:
                continue
            last_reported = stamp
            log.info("query progress", **progress_fields(progress))
        if stop_requested():
            return stop_gracefully(query)
        try:
            query.awaitTermination(1)
        except StreamingQueryException:
            break  # reported below
    error = query.exception()
    if error is not None:
        # The first lines say what failed; the JVM stack trace is in Spark's own log record.
        log.error("query failed", error="\n".join(str(error).splitlines()[:20]))
        return EXIT_FAILED
    log.info("job stopped", reason="query ended")
    return 0


def stop_gracefully(query: StreamingQuery) -> int:
    deadline = time.monotonic() + STOP_GRACE_S
    # Between batches if we can: a stopped batch is redone after restart, harmless but wasted.
    while query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()
    log.info("job stopped", reason="stop requested")
    return 0


def progress_fields(progress: dict[str, Any]) -> dict[str, Any]:
    """The fields of Spark's progress report the wrapper turns into metrics."""
    durations = progress.get("durationMs") or {}
    return {
        "batch_id": progress.get("batchId"),
        "batch_timestamp": progress.get("timestamp"),
        "input_rows": progress.get("numInputRows", 0),
        "input_rows_per_second": _number(progress.get("inputRowsPerSecond")),
        "processed_rows_per_second": _number(progress.get("processedRowsPerSecond")),
        "trigger_ms": durations.get("triggerExecution"),
        "batch_ms": durations.get("addBatch"),
    }


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0  # NaN on an empty batch
