"""``cryptoviz produce`` and ``cryptoviz consume``: the seed's console producer and consumer, with
the wire contract checked.

Produce reads ``key::value`` lines (the seed's ``parse.key=true``, ``key.separator=::``). A value is
validated as its topic's payload and re-encoded by the envelope library, so it carries the envelope
headers and exactly the fields consumers read (fields the payload does not know are dropped);
``raw`` sends the bytes as given, without headers.

Consume without a group reads without committing anything (partitions assigned, start at the
beginning or at the log end); with a group it joins it and commits what it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, TextIO, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.ops.errors import OperationFailed
from services.ops.offsets import OffsetReader, kafka_reason
from shared.bus import (
    DeliveryError,
    Producer,
    first_generation_member,
    leave_group,
    next_offsets,
)
from shared.envelope import PAYLOADS, EnvelopeError, Record, decode, encode
from shared.kafka_config import aiokafka_common
from shared.settings import Settings
from shared.topics import topic_specs

PRODUCER_NAME: Final = "cli"  # client id cryptoviz-cli; "producer" header cryptoviz-cli
COMMIT_INTERVAL_S: Final = 1.0
POLL_MS: Final = 200


# -- produce --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProduceSummary:
    produced: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.produced} produced, {self.rejected} rejected"
        return f"{text}, {self.failed} failed" if self.failed else text


def parse_line(topic: str, line: str, *, separator: str, raw: bool, max_value_bytes: int) -> Record:
    """One input line as a record. Raises EnvelopeError (or ValueError) saying why not."""
    key: str | None = None
    value = line
    # A line that opens a JSON object has no key: its value may well contain the separator.
    if separator in line and not line.lstrip().startswith("{"):
        key, value = line.split(separator, 1)
    if raw:
        return Record(
            topic=topic,
            # aiokafka sends a None key as null (the partitioner then spreads records).
            key=cast("bytes", None) if key is None else key.encode(),
            value=value.encode(),
            headers=[],
            timestamp_ms=round(time.time() * 1000),
        )
    payload = decode(topic, value.encode(), max_value_bytes=max_value_bytes)
    if key is not None and key != payload.key:
        raise EnvelopeError(
            topic,
            payload.key_field,
            f"the key {key!r} is not the payload's {payload.key_field} {payload.key!r} "
            f"({topic} is keyed by {payload.key_field})",
            "wrong_key",
        )
    return encode(payload, producer=f"cryptoviz-{PRODUCER_NAME}", max_value_bytes=max_value_bytes)


async def produce(
    settings: Settings,
    topic: str,
    lines: BinaryIO,
    *,
    separator: str = "::",
    raw: bool = False,
    strict: bool = False,
    errors: TextIO | None = None,
) -> ProduceSummary:
    """Send every valid line of ``lines``; report bad ones on ``errors`` and go on (or stop at
    the first one when ``strict``)."""
    errors = errors or sys.stderr
    if not separator:
        raise OperationFailed("the key separator cannot be empty")
    managed = topic in topic_specs(settings)
    if not raw and not managed:
        raise OperationFailed(
            f"unknown topic {topic}; known topics: {', '.join(PAYLOADS)} "
            "(--raw sends to any existing topic, unvalidated)"
        )
    if not managed:
        async with OffsetReader(settings) as reader:
            await reader.partitions([topic])
    summary = ProduceSummary()
    producer = Producer(
        settings,
        name=PRODUCER_NAME,
        registry=CollectorRegistry(),
        # Registry topics are ensured (created, configs reconciled) as every producer does.
        topics=(topic,) if managed else (),
    )
    await producer.start()
    deliveries: list[asyncio.Future[Any]] = []
    number = 0
    try:
        while True:
            data = await asyncio.to_thread(lines.readline)
            if not data:
                break
            number += 1
            line = data.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            try:
                record = parse_line(
                    topic,
                    line,
                    separator=separator,
                    raw=raw,
                    max_value_bytes=settings.kafka_max_message_bytes,
                )
            except (EnvelopeError, ValueError) as exc:
                summary.rejected += 1
                summary.errors.append({"line": number, "error": str(exc)})
                print(f"cryptoviz: line {number}: {exc}", file=errors, flush=True)
                if strict:
                    break
                continue
            deliveries.append(await producer.send(record))
    finally:
        # Bounded: with the broker gone, what is still unsent after this counts as failed.
        await producer.stop(timeout_s=settings.kafka_request_timeout_ms / 1000)
    _tally(deliveries, summary)
    return summary


def _tally(deliveries: Iterable[asyncio.Future[Any]], summary: ProduceSummary) -> None:
    for delivery in deliveries:
        if delivery.cancelled() or not delivery.done():
            summary.failed += 1
            continue
        error = delivery.exception()
        if error is None:
            summary.produced += 1
            continue
        summary.failed += 1
        reason = error.reason if isinstance(error, DeliveryError) else str(error)
        summary.errors.append({"line": None, "error": f"not delivered: {reason}"})


# -- consume --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    from_beginning: bool = False
    group: str | None = None
    max_records: int | None = None
    idle_timeout_s: float | None = None
    print_key: bool = False
    key_separator: str = " :: "
    compact: bool = False
    as_json: bool = False


def _json_or_text(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="replace")


def render(record: ConsumerRecord[bytes, bytes], options: ConsumeOptions) -> str:
    """One record as the console consumer prints it (a JSON line with ``as_json``)."""
    key = None if record.key is None else record.key.decode("utf-8", errors="replace")
    if options.as_json:
        return json.dumps(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": key,
                "headers": {
                    name: raw.decode("utf-8", errors="replace")
                    for name, raw in (record.headers or ())
                },
                "value": _json_or_text(record.value),
            },
            ensure_ascii=False,
        )
    if record.value is None:
        text = "null"
    else:
        try:
            decoded = json.loads(record.value)
        except ValueError:
            text = record.value.decode("utf-8", errors="replace")
        else:
            indent = None if options.compact else 2
            text = json.dumps(decoded, ensure_ascii=False, indent=indent)
    if options.print_key:
        return f"{'null' if key is None else key}{options.key_separator}{text}"
    return text


class _StartAtLogEnd(ConsumerRebalanceListener):  # type: ignore[misc]
    """Group consumers without a committed offset start at the true log end.

    The consumer's own "latest" reset asks ListOffsets, which on the embedded broker lands inside
    the last batch and would print part of it again (see ``services.ops.offsets``).
    """

    def __init__(self, consumer: AIOKafkaConsumer, reader: OffsetReader) -> None:
        self._consumer = consumer
        self._reader = reader
        # aiokafka only logs a listener's exception; the print loop raises it instead.
        self.failure: OperationFailed | None = None

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = list(assigned)
        # Paused before the first await: the consumer goes on fetching while this runs, and
        # nothing may be printed from the position the consumer's own reset picked.
        self._consumer.pause(*partitions)
        try:
            fresh = [tp for tp in partitions if await self._consumer.committed(tp) is None]
            if fresh:
                marks = await self._reader.watermarks(fresh)
                for tp in fresh:
                    self._consumer.seek(tp, marks[tp].high)
        except (OperationFailed, KafkaError) as exc:
            self.failure = OperationFailed(f"cannot find the log end: {exc}")
        finally:
            self._consumer.resume(*partitions)


async def consume(
    settings: Settings, topic: str, options: ConsumeOptions, out: TextIO | None = None
) -> int:
    """Print records until ``max_records``, ``idle_timeout_s`` without any, or SIGINT/SIGTERM;
    return how many were printed."""
    out = out or sys.stdout
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with OffsetReader(settings) as reader:
            partitions = await reader.partitions([topic])
            consumer = AIOKafkaConsumer(
                **aiokafka_common(settings),
                client_id=f"{settings.kafka_client_id}-console",
                group_id=options.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if options.from_beginning else "latest",
                # Kafka's smallest allowed session (group.min.session.timeout.ms): a console
                # killed without leaving frees its partitions soon. The embedded broker also
                # holds a new group's first join for half of it.
                session_timeout_ms=6_000,
                heartbeat_interval_ms=2_000,
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                await consumer.stop()
                raise OperationFailed(
                    f"cannot reach Kafka at {settings.kafka_bootstrap}: {kafka_reason(exc)}"
                ) from None
            try:
                listener: _StartAtLogEnd | None = None
                if options.group is None:
                    consumer.assign(partitions)
                    if options.from_beginning:
                        await consumer.seek_to_beginning(*partitions)
                    else:
                        marks = await reader.watermarks(partitions)
                        for tp in partitions:
                            consumer.seek(tp, marks[tp].high)
                else:
                    listener = None if options.from_beginning else _StartAtLogEnd(consumer, reader)
                    consumer.subscribe([topic], listener=listener)

                def stopped() -> bool:
                    if listener is not None and listener.failure is not None:
                        raise listener.failure
                    return stopping.is_set()

                return await _print_records(consumer, options, out, stopped)
            except KafkaError as exc:
                raise OperationFailed(f"cannot consume {topic}: {kafka_reason(exc)}") from None
            finally:
                first_generation = first_generation_member(consumer)
                await consumer.stop()
                if options.group is not None and first_generation is not None:
                    await leave_group(settings, options.group, first_generation)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _print_records(
    consumer: AIOKafkaConsumer,
    options: ConsumeOptions,
    out: TextIO,
    stopped: Callable[[], bool],
) -> int:
    printed = 0
    pending: dict[TopicPartition, int] = {}
    last_record = last_commit = time.monotonic()
    try:
        while not stopped():
            if options.max_records is not None and printed >= options.max_records:
                break
            if (
                options.idle_timeout_s is not None
                and time.monotonic() - last_record >= options.idle_timeout_s
            ):
                break
            left = None if options.max_records is None else options.max_records - printed
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=left)
            records = [record for batch in batches.values() for record in batch]
            if records:
                last_record = time.monotonic()
                try:
                    for record in records:
                        out.write(render(record, options) + "\n")
                        printed += 1
                        pending.update(next_offsets([record]))
                    out.flush()
                except BrokenPipeError:
                    # The reader went away (`| head`): stop quietly, as other tools do.
                    if out is sys.stdout:
                        _silence_stdout()
                    break
            if (
                options.group is not None
                and pending
                and time.monotonic() - last_commit >= COMMIT_INTERVAL_S
            ):
                await consumer.commit(pending)
                pending = {}
                last_commit = time.monotonic()
    except BaseException:
        if options.group is not None and pending:
            with contextlib.suppress(KafkaError):
                await consumer.commit(pending)
        raise
    if options.group is not None and pending:
        try:
            await consumer.commit(pending)
        except KafkaError as exc:
            raise OperationFailed(
                f"printed {printed} records but could not commit them for group "
                f"{options.group}: {kafka_reason(exc)}"
            ) from None
    return printed


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
