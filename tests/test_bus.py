"""The Kafka bus against a real Kafka-protocol broker: delivery, backpressure, commits, repair."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from shared.bus import BusUnavailable, Consumer, DeliveryError, Producer, next_offsets
from shared.embedded.broker import EmbeddedBroker
from shared.envelope import Header, RawTrade, Record, encode, header
from shared.settings import ConfigError, Settings
from shared.topics import TopicAdmin, ensure_topics
from tests.conftest import free_port

MakeSettings = Callable[..., Settings]


def trade(trade_id: int, pair: str = "BTC/USD") -> RawTrade:
    return RawTrade(
        pair=pair,
        price=100.0 + trade_id,
        volume=0.5,
        timestamp=1_700_000_000.0 + trade_id,
        side="b",
        trade_id=trade_id,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def producer(
    kafka_settings: Settings, registry: CollectorRegistry
) -> AsyncIterator[Producer]:
    await ensure_topics(kafka_settings)
    producer = Producer(kafka_settings, name="cryptoviz-test", registry=registry)
    await producer.start()
    yield producer
    await producer.stop()


async def consume(consumer: Consumer, count: int, timeout_s: float = 15.0) -> list[RawTrade]:
    received: list[RawTrade] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count and time.monotonic() < deadline:
        decoded, _ = consumer.decode(await consumer.fetch(0.5))
        received += [d.payload for d in decoded if isinstance(d.payload, RawTrade)]
    return received


async def consume_records(
    consumer: Consumer, count: int, timeout_s: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records += await consumer.fetch(0.5)
    return records


def encode_trade(trade_id: int) -> bytes:
    return encode(trade(trade_id), producer="t").value


def unique_group(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


async def test_published_payloads_arrive_with_key_headers_and_event_time(
    producer: Producer, kafka_settings: Settings, registry: CollectorRegistry
) -> None:
    pair = f"T{time.monotonic_ns() % 10**8}/USD"  # this test's own records, on a shared topic
    futures = [await producer.publish(trade(i, pair)) for i in range(100)]
    await asyncio.gather(*futures)
    assert value(registry, "cryptoviz_kafka_messages_produced_total", topic="rawtrade") == 100
    assert producer.pending == 0

    consumer = Consumer(
        kafka_settings,
        group_id=unique_group("roundtrip"),
        topics=["rawtrade"],
        registry=registry,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records = []
        deadline = time.monotonic() + 15
        while len(records) < 100 and time.monotonic() < deadline:
            records += [r for r in await consumer.fetch(0.5) if r.key == pair.encode()]
    finally:
        await consumer.stop()
    assert len(records) == 100
    first = records[0]
    assert first.timestamp == 1_700_000_000_000
    assert header(first.headers, Header.SCHEMA) == "rawtrade"
    assert header(first.headers, Header.PRODUCER) == "cryptoviz-test"
    decoded, dead = consumer.decode(records)
    assert dead == []
    assert [d.payload for d in decoded] == [trade(i, pair) for i in range(100)]


async def test_a_consumer_resumes_after_its_last_commit(
    producer: Producer, kafka_settings: Settings, registry: CollectorRegistry
) -> None:
    await ensure_topics(kafka_settings)
    group = unique_group("resume")
    start = Consumer(
        kafka_settings,
        group_id=group,
        topics=["rawalert"],
        registry=registry,
        auto_offset_reset="latest",
    )
    await start.start()
    await start.fetch(0.5)  # joins the group; positions at the end of the log
    await start.commit()
    await start.stop()

    # Raw bytes: this test is about offsets, not payloads.
    records = [Record("rawalert", b"ETH/USD", b"%d" % i, [], 1_000) for i in range(10)]
    await asyncio.gather(*[await producer.send(r) for r in records])

    first = Consumer(kafka_settings, group_id=group, topics=["rawalert"], registry=registry)
    await first.start()
    batch = []
    deadline = time.monotonic() + 15
    while len(batch) < 4 and time.monotonic() < deadline:
        batch += await first.fetch(0.5)
    # Commit only the first four, as a writer does after its transaction.
    assert await first.commit(next_offsets(batch[:4]))
    await first.stop()

    second = Consumer(kafka_settings, group_id=group, topics=["rawalert"], registry=registry)
    await second.start()
    rest = []
    deadline = time.monotonic() + 15
    while len(rest) < 6 and time.monotonic() < deadline:
        rest += await second.fetch(0.5)
    tp = TopicPartition("rawalert", 0)
    assert await second.commit(next_offsets(rest))
    assert await second.committed(tp) == rest[-1].offset + 1
    await second.stop()
    assert [r.value for r in rest] == [b"%d" % i for i in range(4, 10)]


async def test_undecodable_records_become_counted_dead_letters(
    producer: Producer, kafka_settings: Settings, registry: CollectorRegistry
) -> None:
    group = unique_group("dead")
    consumer = Consumer(
        kafka_settings,
        group_id=group,
        topics=["rawticker"],
        registry=registry,
        auto_offset_reset="latest",
    )
    await consumer.start()
    await consumer.fetch(0.5)
    bad = [
        Record("rawticker", b"BTC/USD", b"{not json", [], 1_000),
        Record("rawticker", b"BTC/USD", b'{"pair": "BTC/USD", "last": "high"}', [], 1_000),
    ]
    for record in bad:
        await (await producer.send(record))
    records = []
    deadline = time.monotonic() + 15
    while len(records) < 2 and time.monotonic() < deadline:
        records += await consumer.fetch(0.5)
    await consumer.stop()
    decoded, dead = consumer.decode(records)
    assert decoded == []
    assert [(d.kind, d.topic, d.value) for d in dead] == [
        ("malformed_json", "rawticker", b"{not json"),
        ("invalid", "rawticker", b'{"pair": "BTC/USD", "last": "high"}'),
    ]
    assert "rawticker.last" in dead[1].reason
    assert dead[0].offset + 1 == dead[1].offset
    labels = {"topic": "rawticker"}
    assert value(registry, "cryptoviz_dead_letters_total", **labels, reason="invalid") == 1
    assert value(registry, "cryptoviz_dead_letters_total", **labels, reason="malformed_json") == 1


async def test_send_waits_when_max_pending_records_are_unacknowledged(
    make_settings: MakeSettings, broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    settings = make_settings(broker, CRYPTOVIZ_KAFKA_MAX_PENDING="8")
    await ensure_topics(settings)
    producer = Producer(settings, name="bp", registry=registry)
    await producer.start()
    seen_max = 0
    futures = []
    for i in range(200):
        futures.append(await producer.publish(trade(i)))
        seen_max = max(seen_max, producer.pending)
    await asyncio.gather(*futures)
    await producer.stop()
    assert seen_max == 8
    assert value(registry, "cryptoviz_kafka_messages_produced_total", topic="rawtrade") == 200


async def test_a_record_the_broker_can_never_take_fails_with_a_delivery_error(
    producer: Producer, registry: CollectorRegistry
) -> None:
    too_big = Record("rawticker", b"BTC/USD", b"x" * 2_000_000, [], 1_000)
    future = await producer.send(too_big)
    with pytest.raises(DeliveryError, match="MessageSizeTooLargeError"):
        await future
    assert producer.pending == 0
    labels = {"topic": "rawticker", "reason": "MessageSizeTooLargeError"}
    assert value(registry, "cryptoviz_kafka_produce_errors_total", **labels) == 1


async def test_a_producer_ensures_its_topics_at_start(
    make_settings: MakeSettings, private_broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    settings = make_settings(private_broker)
    producer = Producer(settings, name="p", registry=registry, topics=["rawtrade", "rawalert"])
    await producer.start()
    await producer.stop()
    existing = await TopicAdmin(settings).list_topics()
    assert sorted(existing) == ["rawalert", "rawtrade"]
    assert existing["rawtrade"].configs["segment.ms"] == "3600000"


async def test_an_unreachable_broker_at_start_is_bus_unavailable(
    make_settings: MakeSettings, registry: CollectorRegistry
) -> None:
    settings = make_settings(
        CRYPTOVIZ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", CRYPTOVIZ_KAFKA_IDEMPOTENCE="false"
    )
    with pytest.raises(BusUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:"):
        await Producer(settings, name="p", registry=registry).start()
    with pytest.raises(BusUnavailable):
        await Consumer(settings, group_id="g", topics=["rawtrade"], registry=registry).start()


async def test_idempotence_against_a_broker_without_it_names_the_setting(
    make_settings: MakeSettings, broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    # Tansu cannot answer InitProducerId; Apache Kafka can. The default (on) is for Apache Kafka.
    settings = make_settings(broker, CRYPTOVIZ_KAFKA_IDEMPOTENCE="true")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_KAFKA_IDEMPOTENCE=false"):
        await Producer(settings, name="p", registry=registry).start()


@pytest.mark.slow
async def test_records_sent_while_the_broker_is_down_arrive_once_it_is_back(
    make_settings: MakeSettings, private_broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    settings = make_settings(private_broker, CRYPTOVIZ_KAFKA_REQUEST_TIMEOUT_MS="2000")
    await ensure_topics(settings)
    producer = Producer(settings, name="outage", registry=registry)
    await producer.start()
    await (await producer.publish(trade(0)))

    private_broker.stop()
    futures = [await producer.publish(trade(i)) for i in range(1, 51)]
    await asyncio.sleep(3)  # long enough for deliveries to time out and be retried
    assert not any(f.done() for f in futures)
    restart_and_provision(private_broker, settings)

    await asyncio.wait_for(asyncio.gather(*futures), 60)
    await producer.stop()
    assert value(registry, "cryptoviz_kafka_produce_retries_total", topic="rawtrade") > 0

    # Tansu holds a JoinGroup for seconds: consumers keep the default request timeout.
    consumer = Consumer(
        make_settings(private_broker),
        group_id="outage",
        topics=["rawtrade"],
        registry=registry,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received = await consume(consumer, 50)
    await consumer.stop()
    # Everything sent during the outage arrives, each exactly once.
    assert sorted(t.trade_id or 0 for t in received) == list(range(1, 51))


def restart_and_provision(broker: EmbeddedBroker, settings: Settings) -> None:
    """Restart a memory-only broker and re-create the topics before the event loop runs again.

    Tansu, unlike Apache Kafka, forgets topics on restart and then acknowledges records sent to a
    forgotten topic into a log no consumer reads; provisioning first keeps the test about us.
    """
    broker.stop()
    broker.start()
    provision = threading.Thread(target=asyncio.run, args=(ensure_topics(settings),))
    provision.start()
    provision.join()


@pytest.mark.slow
async def test_a_consumer_keeps_working_after_the_broker_forgot_its_group(
    make_settings: MakeSettings, private_broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    settings = make_settings(private_broker)
    await ensure_topics(settings)
    consumer = Consumer(
        settings,
        group_id="forgetful",
        topics=["rawtrade"],
        registry=registry,
        auto_offset_reset="earliest",
        on_rebuild=lambda: ensure_topics(settings),
    )
    producer = Producer(settings, name="p", registry=registry)
    await producer.start()
    await consumer.start()
    await (await producer.publish(trade(1)))
    batch = await consume_records(consumer, 1)
    assert await consumer.commit(next_offsets(batch))

    restart_and_provision(private_broker, settings)
    # The writer commits the batch it was storing when the broker went away: whether that
    # commit fails (and the consumer rebuilds) or aiokafka rejoins on its own, new records flow.
    await consumer.commit(next_offsets(batch))
    await (await producer.publish(trade(2)))
    later = await consume_records(consumer, 1, timeout_s=45)
    assert [r.value for r in later] == [encode_trade(2)]
    assert await consumer.commit(next_offsets(later))
    await consumer.stop()
    await producer.stop()


async def test_rebuild_reensures_topics_and_resumes_from_committed_offsets(
    kafka_settings: Settings, producer: Producer, registry: CollectorRegistry
) -> None:
    ensured = 0

    async def on_rebuild() -> None:
        nonlocal ensured
        ensured += 1
        await ensure_topics(kafka_settings)

    consumer = Consumer(
        kafka_settings,
        group_id=unique_group("rebuild"),
        topics=["rawalert"],
        registry=registry,
        auto_offset_reset="latest",
        on_rebuild=on_rebuild,
    )
    await consumer.start()
    await consumer.fetch(0.5)
    assert await consumer.commit()
    await (await producer.send(Record("rawalert", b"ETH/USD", b"after", [], 1_000)))
    await consumer.rebuild("test")
    assert ensured == 1
    records = await consume_records(consumer, 1)
    assert [r.value for r in records] == [b"after"]
    assert value(registry, "cryptoviz_kafka_consumer_rebuilds_total", group=consumer.group_id) == 1
    await consumer.stop()


async def test_stop_reports_records_it_could_not_deliver(
    make_settings: MakeSettings, private_broker: EmbeddedBroker, registry: CollectorRegistry
) -> None:
    settings = make_settings(private_broker, CRYPTOVIZ_KAFKA_REQUEST_TIMEOUT_MS="2000")
    await ensure_topics(settings)
    producer = Producer(settings, name="p", registry=registry)
    await producer.start()
    private_broker.stop()
    futures = [await producer.publish(trade(i)) for i in range(5)]
    assert await producer.stop(timeout_s=0.5) == 5
    for future in futures:
        with pytest.raises(DeliveryError):
            future.result()
    labels = {"topic": "", "reason": "unsent_at_stop"}
    assert value(registry, "cryptoviz_kafka_produce_errors_total", **labels) == 5
    assert await producer.stop() == 0  # twice is fine
