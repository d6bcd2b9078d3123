"""A Kafka streaming source on Spark's Python Data Source API, for clusters without the connector.

Spark's own ``kafka`` source lives in connector jars that come from Maven. Where they are on the
classpath the job uses them; where they are not (a development machine, this project's tests) it
reads through this source, which yields the same columns (``schemas.KAFKA_ARROW_SCHEMA``) so
everything downstream is the same code.

Offsets are the native source's JSON shape, ``{"rawtrade": {"0": 1200}}``: the next offset to read
per partition. Spark checkpoints them; a batch is the half-open range [start, end) of each
partition, planned on the driver and read on the executors, one Spark task per Kafka partition, so
a replayed batch reads exactly the same records.

End offsets are the log ends the fetch responses report, not ListOffsets "latest", which the
embedded broker (Tansu) answers short of the end by its last batch (``services.ops.offsets``).
ListOffsets gives a lower bound; a consumer assigned there fetches up to its end-of-partition
event, which carries the true end. On Apache Kafka that fetch is empty.

Options (all strings, as Spark passes them):
- ``subscribe``: comma-separated topics. Topics and partitions that appear later are picked up
  from their first offset.
- ``startingOffsets``: ``earliest``, ``latest`` or offsets JSON (-2 earliest, -1 latest), used only
  when the query has no checkpoint.
- ``maxOffsetsPerTrigger``: cap on records per batch, shared out among partitions.
- ``minPartitions``: cut big batches into at least this many tasks (``split_ranges``).
- ``kafka.*``: librdkafka settings (``kafka.bootstrap.servers``...), as for the native source.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

from services.spark.schemas import KAFKA_ARROW_SCHEMA, spark_schema

if TYPE_CHECKING:
    from confluent_kafka import Consumer
    from pyspark.sql.types import StructType

NAME: Final = "cryptoviz_kafka"
EARLIEST: Final = -2
LATEST: Final = -1
# Records per Arrow batch handed to Spark.
ARROW_BATCH_ROWS: Final = 10_000
# How long a read waits for records that the plan says exist before it calls the range lost.
READ_STALL_S: Final = 30.0
# Below this many records per task, another task costs more than it saves.
MIN_SPLIT_RECORDS: Final = 5_000

Offsets = dict[str, dict[str, int]]


class KafkaSourceError(RuntimeError):
    """Kafka could not answer what the source needs (metadata, offsets, records)."""


def parse_starting_offsets(text: str) -> Offsets | int:
    """``earliest``/``latest`` as -2/-1, or the JSON shape; anything else is a clear error."""
    spec = text.strip().lower()
    if spec == "earliest":
        return EARLIEST
    if spec == "latest":
        return LATEST
    try:
        parsed = json.loads(text)
        return {str(t): {str(p): int(o) for p, o in parts.items()} for t, parts in parsed.items()}
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"startingOffsets must be earliest, latest or JSON like "
            f'{{"rawtrade": {{"0": 42}}}}, got {text!r}'
        ) from None


def kafka_config(options: Mapping[str, str]) -> dict[str, str]:
    """The ``kafka.``-prefixed options, prefix removed: a librdkafka configuration."""
    return {k.removeprefix("kafka."): v for k, v in options.items() if k.startswith("kafka.")}


def _consumer(options: Mapping[str, str], **extra: Any) -> Consumer:
    from confluent_kafka import Consumer  # noqa: PLC0415 - loaded where it runs

    config: dict[str, Any] = {
        # Never used to join the group: this consumer is assigned, it never subscribes.
        "group.id": "cryptoviz-spark-source",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "log_level": 3,
        **kafka_config(options),
        **extra,
    }
    return Consumer(config)


@dataclass(frozen=True, slots=True)
class KafkaRange(InputPartition):
    """Records [start, end) of one Kafka partition: one Spark task."""

    topic: str
    partition: int
    start: int
    end: int


class KafkaStreamReader(DataSourceStreamReader):
    def __init__(self, options: Mapping[str, str]) -> None:
        # Spark hands options over case-insensitively; a plain dict of them is lower case.
        self.options = {k.lower(): v for k, v in options.items()}
        self.topics = [t.strip() for t in self.options.get("subscribe", "").split(",") if t.strip()]
        if not self.topics:
            raise ValueError("option subscribe must name at least one topic")
        self.starting = parse_starting_offsets(self.options.get("startingoffsets", "latest"))
        cap = self.options.get("maxoffsetspertrigger")
        self.max_per_batch = int(cap) if cap else None
        self.min_partitions = int(self.options.get("minpartitions") or 1)
        self._probe: Consumer | None = None

    # -- driver side ----------------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        if self._probe is None:
            # Short fetch waits: an end-offset probe of an idle partition answers in ~10 ms.
            self._probe = _consumer(self.options, **{"fetch.wait.max.ms": 10})
        return self._probe

    def _watermarks(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) of every partition of the subscribed topics that exist now."""
        from confluent_kafka import KafkaException, TopicPartition  # noqa: PLC0415

        consumer = self._consumer()
        try:
            metadata = consumer.list_topics(timeout=10)
            tps = [
                (topic, p)
                for topic in self.topics
                if topic in metadata.topics and metadata.topics[topic].error is None
                for p in sorted(metadata.topics[topic].partitions)
            ]
            lows: dict[tuple[str, int], int] = {}
            bounds: dict[tuple[str, int], int] = {}
            for topic, p in tps:
                low, bound = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                lows[topic, p], bounds[topic, p] = int(low), int(bound)
        except KafkaException as exc:
            raise KafkaSourceError(f"cannot read offsets: {exc.args[0]}") from None
        return {tp: (lows[tp], high) for tp, high in self._fetch_ends(bounds).items()}

    def _fetch_ends(self, bounds: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """True log ends: the high watermark of a fetch answered from each lower bound.

        Any answer will do, records or end-of-partition: librdkafka keeps the high watermark of
        the latest fetch response per partition. Waiting for end-of-partition instead would wait
        as long as producers keep the partition busy.
        """
        from confluent_kafka import KafkaError, TopicPartition  # noqa: PLC0415

        if not bounds:
            return {}
        consumer = self._consumer()
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in bounds.items()])
        seen: dict[tuple[str, int], int] = {}  # partition -> the end its answers prove
        deadline = time.monotonic() + 10
        try:
            while len(seen) < len(bounds):
                if time.monotonic() > deadline:
                    missing = ", ".join(f"{t}-{p}" for t, p in bounds if (t, p) not in seen)
                    raise KafkaSourceError(f"no fetch answer for {missing}")
                # Short waits: consume() returns early only when it has this many events.
                for message in consumer.consume(1000, 0.02):
                    error = message.error()
                    tp = (message.topic() or "", message.partition() or 0)
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaSourceError(f"{tp[0]}-{tp[1]}: {error.str()}")
                    # A record at o proves an end past it; end-of-partition at o is the end.
                    proven = int(message.offset() or 0) + (1 if error is None else 0)
                    seen[tp] = max(seen.get(tp, 0), proven)
            ends = {}
            for (topic, p), bound in bounds.items():
                _, cached = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                ends[topic, p] = max(bound, seen[topic, p], int(cached))
        finally:
            consumer.unassign()
        return ends

    def initialOffset(self) -> Offsets:  # noqa: N802 - Spark's API
        marks = self._watermarks()
        chosen: Offsets = {}
        for (topic, p), (low, high) in marks.items():
            given = (
                self.starting.get(topic, {}).get(str(p), EARLIEST)
                if isinstance(self.starting, dict)
                else self.starting
            )
            offset = low if given == EARLIEST else high if given == LATEST else given
            chosen.setdefault(topic, {})[str(p)] = min(max(offset, low), high)
        return chosen

    def latestOffset(  # noqa: N802 - Spark's API
        self, start: Offsets | None = None, limit: object = None
    ) -> Offsets:
        """The end of the next batch: every partition's log end, capped by the read limit.

        ``start`` and ``limit`` come from Spark 4.2 and later; earlier versions call this with
        neither (no cap then but the option's).
        """
        marks = self._watermarks()
        latest: Offsets = {}
        for (topic, p), (_, high) in marks.items():
            latest.setdefault(topic, {})[str(p)] = high
        cap = _max_rows(limit, self.max_per_batch)
        if cap is None or start is None:
            return latest
        return cap_offsets(start, latest, cap)

    def getDefaultReadLimit(self) -> Any:  # noqa: N802 - Spark's API
        from pyspark.sql.streaming.datasource import (  # noqa: PLC0415 - Spark 4.2+
            ReadAllAvailable,
            ReadMaxRows,
        )

        return ReadMaxRows(self.max_per_batch) if self.max_per_batch else ReadAllAvailable()

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[KafkaRange]:
        ranges = []
        for topic, parts in end.items():
            for p, stop in parts.items():
                # A partition that appeared after the start is read from its beginning; one whose
                # end went backwards was recreated (a broker that lost its log): read what the
                # new log holds rather than wait for offsets that will never come.
                begin = start.get(topic, {}).get(p, 0)
                if stop < begin:
                    begin = 0
                if stop > begin:
                    ranges.append(KafkaRange(topic, int(p), begin, stop))
        return split_ranges(ranges, self.min_partitions)

    def commit(self, end: Offsets) -> None:
        # Group offsets are committed by the sink after its database commit (``sink``), which
        # comes before Spark's own commit log; nothing to do here.
        return None

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- executor side --------------------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaRange)
        yield from read_range(self.options, partition)

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to executors for read(): the driver's probe consumer stays behind.
        state = self.__dict__.copy()
        state["_probe"] = None
        return state


def split_ranges(ranges: list[KafkaRange], min_partitions: int) -> list[KafkaRange]:
    """At least ``min_partitions`` tasks when the batch is big enough, as the native source's
    ``minPartitions`` does: a large range is cut into consecutive pieces, in proportion to its
    share of the batch, so one busy Kafka partition is read and decoded by several cores."""
    total = sum(r.end - r.start for r in ranges)
    if min_partitions <= len(ranges) or total < MIN_SPLIT_RECORDS * min_partitions:
        return ranges
    pieces = []
    for r in ranges:
        size = r.end - r.start
        count = max(1, min(size // MIN_SPLIT_RECORDS, round(min_partitions * size / total)))
        bounds = [r.start + size * i // count for i in range(count + 1)]
        pieces += [KafkaRange(r.topic, r.partition, a, b) for a, b in itertools.pairwise(bounds)]
    return pieces


def _max_rows(limit: object, option: int | None) -> int | None:
    rows = getattr(limit, "max_rows", None)
    if rows is None and type(limit).__name__ == "ReadAllAvailable":
        return None
    return int(rows) if rows is not None else option


def cap_offsets(start: Offsets, latest: Offsets, cap: int) -> Offsets:
    """``latest`` reduced so the batch holds at most about ``cap`` records, shared out among the
    partitions in proportion to their backlog (each moves by at least one record)."""
    backlog = {
        (t, p): max(0, end - start.get(t, {}).get(p, 0))
        for t, parts in latest.items()
        for p, end in parts.items()
    }
    total = sum(backlog.values())
    if total <= cap:
        return latest
    capped: Offsets = {}
    for (t, p), waiting in backlog.items():
        begin = start.get(t, {}).get(p, 0)
        share = min(waiting, max(1, math.floor(cap * waiting / total))) if waiting else 0
        capped.setdefault(t, {})[p] = begin + share if waiting else latest[t][p]
    return capped


def read_range(options: Mapping[str, str], part: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Every record of ``part``, in order, as Arrow batches of the Kafka source's columns."""
    from confluent_kafka import KafkaError, TopicPartition  # noqa: PLC0415

    consumer = _consumer(options, **{"fetch.wait.max.ms": 100})
    consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    rows: dict[str, list[Any]] = {name: [] for name in KAFKA_ARROW_SCHEMA.names}
    position = part.start
    stalled_since = time.monotonic()
    try:
        while position < part.end:
            messages = consumer.consume(min(ARROW_BATCH_ROWS, part.end - position), 1.0)
            if not messages and time.monotonic() - stalled_since > READ_STALL_S:
                raise KafkaSourceError(
                    f"{part.topic}-{part.partition}: no records from offset {position} in "
                    f"{READ_STALL_S:g} s, planned up to {part.end}"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The log ends short of the plan: it was recreated or truncated.
                        position = part.end
                        break
                    raise KafkaSourceError(f"{part.topic}-{part.partition}: {error.str()}")
                offset = int(message.offset() or 0)
                if offset >= part.end:
                    position = part.end
                    break
                stalled_since = time.monotonic()
                position = offset + 1
                kind, stamp = message.timestamp()
                rows["key"].append(message.key())
                rows["value"].append(message.value())
                rows["topic"].append(part.topic)
                rows["partition"].append(part.partition)
                rows["offset"].append(offset)
                rows["timestamp"].append(stamp)
                rows["timestampType"].append(max(0, kind - 1))
                headers: Any = message.headers() or ()
                rows["headers"].append([{"key": k, "value": v} for k, v in headers])
            if len(rows["offset"]) >= ARROW_BATCH_ROWS:
                yield _batch(rows)
        if rows["offset"]:
            yield _batch(rows)
    finally:
        consumer.close()


def _batch(rows: dict[str, list[Any]]) -> pa.RecordBatch:
    # Kafka timestamps are epoch milliseconds; Spark's timestamps are microseconds.
    millis = pa.array(rows["timestamp"], pa.int64())
    stamps = pc.multiply(millis, 1000).cast(KAFKA_ARROW_SCHEMA.field("timestamp").type)
    arrays = [
        stamps if name == "timestamp" else pa.array(rows[name], KAFKA_ARROW_SCHEMA.field(name).type)
        for name in KAFKA_ARROW_SCHEMA.names
    ]
    batch = pa.RecordBatch.from_arrays(arrays, schema=KAFKA_ARROW_SCHEMA)
    for column in rows.values():
        column.clear()
    return batch


class KafkaDataSource(DataSource):
    """``spark.readStream.format("cryptoviz_kafka")``: see the module docstring for options."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> StructType:
        return spark_schema(KAFKA_ARROW_SCHEMA)

    def streamReader(self, schema: StructType) -> KafkaStreamReader:  # noqa: N802 - Spark's API
        return KafkaStreamReader(self.options)
