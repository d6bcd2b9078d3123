"""Producer throughput and send-to-ack latency against the embedded broker.

``shared.bus.Producer`` as the daemons run it (acks=all, lz4, the configured linger and
max_pending), on ``rawtrade`` records, against an embedded broker started for the run on a free
loopback port. Idempotence is off: the embedded broker cannot initialise an idempotent producer.

Throughput: records handed over as fast as ``publish`` accepts them, then all acknowledgements
awaited. Latency: records offered at a fixed rate, paced on the event loop; a record's latency runs
from just before ``publish`` (encoding included) to the done-callback of its delivery future.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import itertools
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bench import _samples, _table
from bench._timing import REPEATS, percentile
from shared.bus import Producer
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.process import free_port
from shared.envelope import Payload, RawTrade, Record, encode
from shared.settings import Settings, load_settings
from shared.topics import ensure_topics, topic_specs

TOPIC = RawTrade.topic
NAME = "bench"
OFFERED_RATES = (2_000, 10_000)
FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    throughput_messages: int
    latency_duration_s: float
    warmup_messages: int = 2_000


FULL = Plan(throughput_messages=30_000, latency_duration_s=5.0)
QUICK = Plan(throughput_messages=5_000, latency_duration_s=1.0, warmup_messages=500)


@dataclass(frozen=True, slots=True)
class Throughput:
    label: str
    messages: int
    value_bytes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Latency:
    offered_rate: int
    messages: int
    sending_s: float
    ordered_s: list[float]


class _Acks:
    """Times each delivery from its send; keeps figures, not futures.

    Holding every future until the end would grow the heap by tens of thousands of objects, and
    the cyclic GC's full collections, and the final gather over all of them, would then show up
    as tens of milliseconds of latency that a daemon does not have.
    """

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[BaseException] = []

    def watch(self, future: asyncio.Future[Any], sent_at: float) -> None:
        future.add_done_callback(functools.partial(self._done, sent_at))

    def _done(self, sent_at: float, future: asyncio.Future[Any]) -> None:
        acked_at = time.perf_counter()
        if future.cancelled():
            self.failures.append(asyncio.CancelledError())
        elif (error := future.exception()) is not None:
            self.failures.append(error)
        else:
            self.latencies.append(acked_at - sent_at)


def _trades(ids: Iterator[int], count: int) -> list[Payload]:
    return [_samples.trade(next(ids)) for _ in range(count)]


async def _publish_all(producer: Producer, payloads: Sequence[Payload]) -> float:
    """Seconds to publish every payload and have every one acknowledged."""
    started = time.perf_counter()
    futures = [await producer.publish(payload) for payload in payloads]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def _send_all(producer: Producer, records: Sequence[Record]) -> float:
    """Seconds to send every record and have every one acknowledged."""
    started = time.perf_counter()
    futures = [await producer.send(record) for record in records]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def _throughput(producer: Producer, ids: Iterator[int], count: int) -> list[Throughput]:
    """Best of 3 runs of ``count`` records, for publish and for send of pre-encoded records."""
    published_s = sent_s = math.inf
    value_bytes = 0
    for _ in range(REPEATS):
        payloads = _trades(ids, count)
        records = [encode(payload, producer=NAME) for payload in _trades(ids, count)]
        value_bytes = sum(len(record.value) for record in records)
        gc.collect()
        published_s = min(published_s, await _publish_all(producer, payloads))
        gc.collect()
        sent_s = min(sent_s, await _send_all(producer, records))
    return [
        Throughput("publish (encode + send)", count, value_bytes, published_s),
        Throughput("send (encoded beforehand)", count, value_bytes, sent_s),
    ]


async def _offer(producer: Producer, ids: Iterator[int], count: int, rate: int) -> Latency:
    """Publish ``count`` trades at ``rate`` per second; time every acknowledgement."""
    acks = _Acks()
    started = time.perf_counter()
    for index in range(count):
        # Deadline pacing: a late wake-up is caught up by sending without sleeping, so the
        # offered rate holds on average even though the loop sleeps in whole milliseconds.
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # Built at send time, as the Kraken daemon does, rather than held in a list.
        payload = _samples.trade(next(ids))
        sent_at = time.perf_counter()
        acks.watch(asyncio.ensure_future(await producer.publish(payload)), sent_at)
    sending_s = time.perf_counter() - started
    unacked = await producer.flush(FLUSH_TIMEOUT_S)
    if acks.failures or unacked:
        raise RuntimeError(
            f"{len(acks.failures)} deliveries failed and {unacked} were not acknowledged"
            f" within {FLUSH_TIMEOUT_S:.0f} s; first failure: {acks.failures[:1]}"
        )
    return Latency(rate, count, sending_s, sorted(acks.latencies))


@dataclass(frozen=True, slots=True)
class Report:
    parameters: list[tuple[str, str]]
    throughput: list[Throughput]
    latency: list[Latency]


async def _measure(settings: Settings, plan: Plan) -> Report:
    await ensure_topics(settings)
    producer = Producer(settings, name=NAME, registry=CollectorRegistry())
    await producer.start()
    try:
        ids = itertools.count()
        # Connections, metadata and the first batches are paid for here, not in the figures.
        await _publish_all(producer, _trades(ids, plan.warmup_messages))
        throughput = await _throughput(producer, ids, plan.throughput_messages)
        latency = []
        for rate in OFFERED_RATES:
            # Start each run without the garbage of the previous one.
            gc.collect()
            latency.append(await _offer(producer, ids, round(rate * plan.latency_duration_s), rate))
    finally:
        await producer.stop()
    return Report(_parameters(settings), throughput, latency)


def _parameters(settings: Settings) -> list[tuple[str, str]]:
    batch_size = inspect.signature(AIOKafkaProducer).parameters["max_batch_size"].default
    return [
        ("acks", "all"),
        ("compression", "lz4"),
        ("idempotence", f"{settings.kafka_idempotence} (the embedded broker has none)".lower()),
        ("linger_ms", str(settings.kafka_linger_ms)),
        ("max_pending", _table.count(settings.kafka_max_pending)),
        ("max_batch_size (aiokafka default)", f"{batch_size:,} B"),
        (f"{TOPIC} partitions", str(topic_specs(settings)[TOPIC].partitions)),
    ]


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(*, quick: bool = False) -> None:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="cryptoviz-bench-") as scratch:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(scratch) / "broker.log")
        try:
            broker.start()
            with _environment(
                CRYPTOVIZ_KAFKA_BOOTSTRAP=broker.bootstrap,
                # The embedded broker cannot initialise an idempotent producer (InitProducerId).
                CRYPTOVIZ_KAFKA_IDEMPOTENCE="false",
            ):
                settings = load_settings(Settings)
            report = asyncio.run(_measure(settings, plan))
        finally:
            broker.stop()
    _print(report)


def _print(report: Report) -> None:
    print(
        _table.render(
            "Producer parameters (shared.bus.Producer, embedded broker on loopback)",
            ["parameter", "value"],
            [list(pair) for pair in report.parameters],
            labels=2,
        )
    )
    print()
    print(
        _table.render(
            f"Producer throughput ({TOPIC}; MB/s counts record values, uncompressed)",
            ["mode", "messages", "seconds", "msg/s", "MB/s"],
            [
                [
                    run.label,
                    _table.count(run.messages),
                    f"{run.elapsed_s:.2f}",
                    _table.count(run.messages / run.elapsed_s),
                    f"{run.value_bytes / 1e6 / run.elapsed_s:.2f}",
                ]
                for run in report.throughput
            ],
        )
    )
    print()
    print(
        _table.render(
            f"Producer send-to-ack latency ({TOPIC}, fixed offered rate; ms)",
            ["offered msg/s", "achieved msg/s", "messages", "p50", "p99", "max"],
            [
                [
                    _table.count(run.offered_rate),
                    _table.count(run.messages / run.sending_s),
                    _table.count(run.messages),
                    _table.millis(percentile(run.ordered_s, 0.50)),
                    _table.millis(percentile(run.ordered_s, 0.99)),
                    _table.millis(run.ordered_s[-1]) if run.ordered_s else "-",
                ]
                for run in report.latency
            ],
        )
    )
