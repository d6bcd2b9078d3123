"""kafka_to_timescale: the seed's ingestion job, group ``spark-job-ingestion``.

Reads the four topics, decodes every record with the envelope library (``services.spark.decode``)
and stores each micro-batch in one transaction (``services.spark.sink``), then commits the batch's
offsets to the consumer group. ``cryptoviz-spark ingestion`` runs it through ``spark-submit`` and
supervises it; it can also be submitted by hand, with the package installed:

    spark-submit --master 'local[2]' services/spark/jobs/kafka_to_timescale.py

Its output is for the wrapper: one JSON line per event (``kafka source``, ``batch stored``,
``query progress``, ``job stopped``). It stops between batches when the file named by
``CRYPTOVIZ_SPARK_STOP_FILE`` appears.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from services.spark import driver
from services.spark.decode import decode_batches
from services.spark.group_offsets import GroupCommitter, GroupOffsetsError
from services.spark.schemas import decoded_arrow_schema, spark_schema
from services.spark.sink import BatchResult, PostgresSink, batch_offsets
from shared.kafka_config import librdkafka_config

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


log = structlog.get_logger(__name__)

JOB = "ingestion"


class BatchWriter:
    """The foreachBatch function: database first, then the group's offsets."""

    def __init__(self, sink: PostgresSink, group: GroupCommitter) -> None:
        self.sink = sink
        self.group = group

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        table = batch.toArrow()
        result = BatchResult(batch_id=batch_id, rows_in=table.num_rows)
        if table.num_rows:
            self.sink.write(batch_id, table, result)
            result.event_lag_s = _event_lag(table)
            result.offsets = batch_offsets(table)
            try:
                self.group.commit(result.offsets)
                result.group_committed = True
            except GroupOffsetsError as exc:
                # Stored all the same; the next batch commits further. Lag looks larger meanwhile.
                log.warning("group offsets not committed", batch_id=batch_id, error=str(exc))
        log.info("batch stored", **result.as_event())


def _event_lag(table: pa.Table) -> float | None:
    """Seconds from the oldest record's Kafka timestamp (its event time) to now."""
    if "timestamp" not in table.column_names:
        return None
    oldest = pc.min(table.column("timestamp")).as_py()
    return None if oldest is None else time.time() - oldest.timestamp()


def main() -> int:
    settings, job = driver.load(JOB)
    spark = driver.session(job)
    checkpoint = settings.checkpoint_dir(job.name)
    stop_requested = driver.StopRequest()
    sink = PostgresSink(
        settings.db_dsn.get_secret_value(),
        retry_for_s=settings.spark_db_retry_s,
        stopping=stop_requested,
    )
    group = GroupCommitter(librdkafka_config(settings), job.group)
    try:
        source = driver.kafka_stream(spark, settings, job, checkpoint)
        decoded = source.mapInArrow(decode_batches, spark_schema(decoded_arrow_schema()))
        query = (
            decoded.writeStream.queryName(f"cryptoviz-{job.name}")
            .foreachBatch(BatchWriter(sink, group))
            .option("checkpointLocation", str(checkpoint))
            .trigger(processingTime=f"{settings.spark_trigger_s} seconds")
            .start()
        )
        log.info("job started", query_id=str(query.id), checkpoint=str(checkpoint))
        return driver.run_query(query, stop_requested)
    except GroupOffsetsError as exc:
        # Kafka unreachable at start: one line for the operator; the wrapper restarts us.
        log.error("cannot start the query", error=str(exc))
        return driver.EXIT_FAILED
    finally:
        group.close()
        sink.close()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
