"""The Python Kafka source, driven as Spark drives it (offsets on the driver, ranges read on the
executors), against a real Kafka-protocol broker: exact end offsets, exact ranges, the native
source's columns."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.spark.kafka_source import (
    KafkaRange,
    KafkaStreamReader,
    cap_offsets,
    parse_starting_offsets,
)
from services.spark.schemas import KAFKA_ARROW_SCHEMA
from shared.embedded.broker import EmbeddedBroker
from shared.envelope import encode
from tests.spark_records import T0, trade


@pytest.fixture
def kafka(private_broker: EmbeddedBroker) -> EmbeddedBroker:
    """A broker with the two topics the reader subscribes to, one partition each (the embedded
    broker would auto-create them with four)."""
    admin = AdminClient({"bootstrap.servers": private_broker.bootstrap})
    created = admin.create_topics([NewTopic(t, 1, 1) for t in ("rawtrade", "rawticker")])
    for future in created.values():
        future.result(10)
    return private_broker


def produce(broker: EmbeddedBroker, topic: str, batches: list[int], *, first_id: int = 0) -> None:
    """Trades in separate producer batches of the given sizes (one flush per batch)."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    trade_id = first_id
    for size in batches:
        for _ in range(size):
            record = encode(trade(trade_id), producer="tests")
            producer.produce(
                topic,
                record.value,
                record.key,
                partition=0,
                headers=record.headers,
                timestamp=record.timestamp_ms,
            )
            trade_id += 1
        producer.flush(10)


@pytest.fixture
def readers(kafka: EmbeddedBroker) -> Iterator[Callable[..., KafkaStreamReader]]:
    made: list[KafkaStreamReader] = []

    def make(**options: str) -> KafkaStreamReader:
        made.append(reader(kafka, **options))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def reader(broker: EmbeddedBroker, **options: str) -> KafkaStreamReader:
    return KafkaStreamReader(
        {
            "subscribe": "rawtrade,rawticker",
            "kafka.bootstrap.servers": broker.bootstrap,
            **options,
        }
    )


def test_end_offsets_are_the_log_end_even_where_list_offsets_falls_short(
    kafka: EmbeddedBroker, readers: Callable[..., KafkaStreamReader]
) -> None:
    # Tansu answers ListOffsets "latest" with 4 here (the last batch's base offset + 1).
    produce(kafka, "rawtrade", [3, 4])
    source = readers(startingOffsets="earliest")
    start = source.initialOffset()
    assert start == {"rawtrade": {"0": 0}, "rawticker": {"0": 0}}
    assert source.latestOffset(start, None) == {"rawtrade": {"0": 7}, "rawticker": {"0": 0}}


def test_starting_offsets_earliest_latest_and_explicit(
    kafka: EmbeddedBroker, readers: Callable[..., KafkaStreamReader]
) -> None:
    produce(kafka, "rawtrade", [5])
    assert readers(startingOffsets="latest").initialOffset()["rawtrade"] == {"0": 5}
    explicit = readers(startingOffsets='{"rawtrade": {"0": 2}}').initialOffset()
    # Partitions the JSON leaves out start at their beginning, as new ones do.
    assert explicit == {"rawtrade": {"0": 2}, "rawticker": {"0": 0}}
    beyond = readers(startingOffsets='{"rawtrade": {"0": 99}}').initialOffset()
    assert beyond["rawtrade"] == {"0": 5}  # clamped to the log


def test_a_range_reads_exactly_its_records_with_the_kafka_source_columns(
    kafka: EmbeddedBroker, readers: Callable[..., KafkaStreamReader]
) -> None:
    produce(kafka, "rawtrade", [4, 4, 4])
    source = readers()
    [part] = source.partitions({"rawtrade": {"0": 2}}, {"rawtrade": {"0": 9}})
    assert part == KafkaRange("rawtrade", 0, 2, 9)
    # Spark pickles the reader to the executors; the driver's consumer must not go along.
    shipped = pickle.loads(pickle.dumps(source))
    batches = list(shipped.read(part))
    assert all(batch.schema == KAFKA_ARROW_SCHEMA for batch in batches)
    rows = [row for batch in batches for row in batch.to_pylist()]
    assert [row["offset"] for row in rows] == list(range(2, 9))
    first = rows[0]
    assert first["key"] == b"BTC/USD"
    assert first["topic"] == "rawtrade"
    assert first["timestamp"].timestamp() == pytest.approx(T0 + 2, abs=0.001)
    assert {h["key"] for h in first["headers"]} == {
        "schema",
        "schema-version",
        "producer",
        "event-id",
    }


def test_a_log_that_went_backwards_is_read_from_its_start() -> None:
    # A broker that lost its log (the embedded one keeps none across restarts) comes back with
    # offsets below the checkpoint's: what it holds now is read, not waited for.
    source = KafkaStreamReader({"subscribe": "rawtrade"})
    assert source.partitions({"rawtrade": {"0": 500}}, {"rawtrade": {"0": 3}}) == [
        KafkaRange("rawtrade", 0, 0, 3)
    ]
    # A partition that appeared since the last batch is read from its beginning.
    assert source.partitions({}, {"rawticker": {"0": 2}}) == [KafkaRange("rawticker", 0, 0, 2)]
    assert source.partitions({"rawtrade": {"0": 3}}, {"rawtrade": {"0": 3}}) == []


def test_a_batch_cap_is_shared_out_by_backlog() -> None:
    start = {"a": {"0": 0, "1": 100}}
    latest = {"a": {"0": 900, "1": 200}}
    assert cap_offsets(start, latest, 1_000) == latest
    assert cap_offsets(start, latest, 100) == {"a": {"0": 90, "1": 110}}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("earliest", -2), ("LATEST", -1), ('{"rawtrade": {"0": 7}}', {"rawtrade": {"0": 7}})],
)
def test_starting_offsets_parse(text: str, parsed: object) -> None:
    assert parse_starting_offsets(text) == parsed


def test_bad_starting_offsets_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="startingOffsets must be earliest, latest or JSON"):
        parse_starting_offsets("yesterday")


def test_a_big_batch_is_cut_into_tasks_of_consecutive_offsets() -> None:
    source = KafkaStreamReader({"subscribe": "rawtrade", "minPartitions": "4"})
    ranges = source.partitions(
        {"rawtrade": {"0": 0}, "rawticker": {"0": 0}},
        {"rawtrade": {"0": 90_000}, "rawticker": {"0": 30_000}},
    )
    assert ranges == [
        KafkaRange("rawtrade", 0, 0, 30_000),
        KafkaRange("rawtrade", 0, 30_000, 60_000),
        KafkaRange("rawtrade", 0, 60_000, 90_000),
        KafkaRange("rawticker", 0, 0, 30_000),
    ]
    # A small batch stays one task per partition.
    assert len(source.partitions({}, {"rawtrade": {"0": 900}})) == 1
