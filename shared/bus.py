"""Kafka producer and consumer, set up the one right way for every CRYPTO VIZ service.

Producer: acks=all, idempotent unless the broker cannot (a setting), lz4, a bounded number of
records in flight (``send`` waits for a slot: backpressure, never an unbounded buffer), retriable
delivery failures re-sent until the daemon stops, and every outcome counted.

Consumer: manual commits only (callers commit after their own transaction), explicit lag from the
fetch high watermark, undecodable records turned into :class:`DeadLetter` values instead of
exceptions, and a rebuild when the broker has lost the group or topic (the embedded broker forgets
everything on restart; an aiokafka consumer then fails every commit and never recovers alone).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import RecordMetadata
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.backoff import full_jitter_backoff
from shared.envelope import EnvelopeError, Payload, Record, decode, encode
from shared.kafka_config import aiokafka_common
from shared.settings import ConfigError, Settings
from shared.topics import TopicError, ensure_topics

log = structlog.get_logger(__name__)

LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RETRY_BACKOFF_CAP_S: Final = 5.0


class BusUnavailable(Exception):
    """Kafka cannot be reached or refused us; the daemon retries its start with backoff."""


class DeliveryError(Exception):
    """A record the broker refused for good (too large, not authorised, ...)."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"{topic}: {reason}")


# A broker that lost a topic answers produce requests with UNKNOWN_TOPIC_OR_PARTITION; the
# embedded broker (Tansu) answers UNKNOWN_SERVER_ERROR instead, so both mean "re-ensure topics".
_TOPIC_MISSING = (UnknownTopicOrPartitionError, UnknownError)
# An unknown server error is not retriable in general: give it a few attempts, not forever.
UNKNOWN_ERROR_ATTEMPTS: Final = 10
TOPIC_REPAIR_INTERVAL_S: Final = 5.0


def _is_retriable(exc: BaseException, attempt: int) -> bool:
    # aiokafka marks its delivery timeout as non-retriable; for us it means "broker away", and a
    # trade must wait for the broker rather than be dropped.
    if isinstance(exc, UnknownError):
        return attempt < UNKNOWN_ERROR_ATTEMPTS
    return isinstance(exc, KafkaTimeoutError | KafkaConnectionError) or bool(
        getattr(exc, "retriable", False)
    )


def _reason(exc: BaseException) -> str:
    return type(exc).__name__


class KeyPartitioner:
    """Kafka's default partitioning (murmur2 of the key), memoised per key.

    Keys are few (pairs, sources) and aiokafka's murmur2 is pure Python, run for every record.
    The partition chosen is exactly the default one, so per-key ordering is unchanged.
    """

    MAX_KEYS: Final = 100_000

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        cache_key = (key, len(all_partitions))
        partition = self._cache.get(cache_key)
        if partition is None:
            if len(self._cache) >= self.MAX_KEYS:
                self._cache.clear()  # unbounded key sets still get a bounded memory
            partition = int(DefaultPartitioner()(key, all_partitions, available))
            self._cache[cache_key] = partition
        return partition


class ProducerMetrics:
    """One set per registry, shared by every producer of the daemon."""

    _per_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ProducerMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ProducerMetrics:
        if registry not in cls._per_registry:
            cls._per_registry[registry] = cls(registry)
        return cls._per_registry[registry]

    def __init__(self, registry: CollectorRegistry) -> None:
        self.produced = Counter(
            "cryptoviz_kafka_messages_produced",
            "Records acknowledged by the broker.",
            ["topic"],
            registry=registry,
        )
        self.produced_bytes = Counter(
            "cryptoviz_kafka_produced_bytes",
            "Value bytes acknowledged by the broker.",
            ["topic"],
            registry=registry,
        )
        self.errors = Counter(
            "cryptoviz_kafka_produce_errors",
            "Delivery failures by reason; retried ones are counted again as retries.",
            ["topic", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "cryptoviz_kafka_produce_retries",
            "Records sent again after a retriable failure.",
            ["topic"],
            registry=registry,
        )
        self.latency = Histogram(
            "cryptoviz_kafka_produce_latency_seconds",
            "From send to broker acknowledgement, retries included.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge(
            "cryptoviz_kafka_producer_pending_messages",
            "Records sent but not yet acknowledged.",
            registry=registry,
        )
        # Computed when scraped, not counted per record: this is on every record's path.
        self._producers: weakref.WeakSet[Producer] = weakref.WeakSet()
        self.pending.set_function(lambda: float(sum(p.pending for p in self._producers)))
        self._children: dict[str, tuple[Counter, Counter, Histogram]] = {}

    def track(self, producer: Producer) -> None:
        self._producers.add(producer)

    def on_topic(self, topic: str) -> tuple[Counter, Counter, Histogram]:
        """The per-topic children, looked up once: ``labels()`` takes a lock on every call, and
        this runs for every acknowledged record."""
        children = self._children.get(topic)
        if children is None:
            children = (
                self.produced.labels(topic),
                self.produced_bytes.labels(topic),
                self.latency.labels(topic),
            )
            self._children[topic] = children
        return children


class Producer:
    """An aiokafka producer with backpressure, retries that never give up silently, and metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        registry: CollectorRegistry,
        topics: Sequence[str] = (),
        on_topic_missing: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``topics``: the topics this producer writes; ensured at start and again whenever the
        broker says one is missing (unless ``on_topic_missing`` says otherwise)."""
        self._settings = settings
        self._name = name
        self._topics = tuple(topics)
        if on_topic_missing is None and self._topics:
            on_topic_missing = self._ensure_topics
        self._on_topic_missing = on_topic_missing
        self._repair: asyncio.Task[None] | None = None
        self._repaired_at = 0.0
        self._metrics = ProducerMetrics.of(registry)
        self._metrics.track(self)
        self._slots = asyncio.Semaphore(settings.kafka_max_pending)
        self._inflight: set[asyncio.Future[RecordMetadata]] = set()
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._producer: AIOKafkaProducer | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._inflight)

    async def _ensure_topics(self) -> None:
        try:
            changes = await ensure_topics(self._settings, self._topics)
        except TopicError as exc:
            raise BusUnavailable(str(exc)) from None
        for change in changes:
            if change.action != "unchanged":
                log.info("topic " + change.action, topic=change.topic, details=change.details)

    async def start(self) -> None:
        if self._producer is not None:
            return
        if self._topics:
            await self._ensure_topics()
        producer = AIOKafkaProducer(
            **aiokafka_common(self._settings),
            client_id=f"{self._settings.kafka_client_id}-{self._name}",
            acks="all",
            enable_idempotence=self._settings.kafka_idempotence,
            compression_type="lz4",
            linger_ms=self._settings.kafka_linger_ms,
            max_request_size=self._settings.kafka_max_message_bytes,
            partitioner=KeyPartitioner(),
        )
        try:
            await producer.start()
        except UnknownError:
            await producer.stop()
            if self._settings.kafka_idempotence:
                raise ConfigError(
                    "the broker refused to initialise an idempotent producer (InitProducerId); "
                    "brokers without it, like the embedded one, need "
                    "CRYPTOVIZ_KAFKA_IDEMPOTENCE=false"
                ) from None
            raise
        except KafkaError as exc:
            await producer.stop()
            raise BusUnavailable(
                f"cannot reach Kafka at {self._settings.kafka_bootstrap}: {exc}"
            ) from None
        self._producer = producer
        self._closing = False

    async def publish(
        self, payload: Payload, *, event_id: str | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Encode and send a payload; see :meth:`send`."""
        record = encode(
            payload,
            producer=self._name,
            event_id=event_id,
            max_value_bytes=self._settings.kafka_max_message_bytes,
        )
        return await self.send(record)

    async def send(self, record: Record) -> asyncio.Future[RecordMetadata]:
        """Hand a record to Kafka; returns a future that resolves when the broker has it.

        Waits while ``kafka_max_pending`` records are unacknowledged (backpressure). Retriable
        failures are re-sent with capped, jittered backoff until :meth:`stop`; a permanent
        failure resolves the future with :class:`DeliveryError`.
        """
        if self._producer is None or self._closing:
            raise RuntimeError("producer is not running")
        await self._slots.acquire()
        outer: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self._inflight.add(outer)
        try:
            await self._attempt(record, outer, time.perf_counter(), 0)
        except BaseException as exc:
            # Cancelled (or worse) before aiokafka took the record: free the slot, or flush and
            # stop would wait for a record that was never sent.
            self._settle(outer, error=DeliveryError(record.topic, f"not sent: {_reason(exc)}"))
            raise
        return outer

    def _settle(
        self,
        outer: asyncio.Future[RecordMetadata],
        result: RecordMetadata | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Resolve a send's future and free its slot at once (not on a later loop turn)."""
        if outer.done():
            return
        if error is not None:
            outer.set_exception(error)
            # Already logged and counted here; a caller that never awaits it is not a bug.
            outer.exception()
        else:
            outer.set_result(result)
        self._inflight.discard(outer)
        self._slots.release()

    async def _attempt(
        self, record: Record, outer: asyncio.Future[RecordMetadata], started: float, attempt: int
    ) -> None:
        assert self._producer is not None
        try:
            delivery = await self._producer.send(
                record.topic,
                record.value,
                key=record.key,
                headers=record.headers,
                timestamp_ms=record.timestamp_ms,
            )
        except KafkaError as exc:
            self._on_failure(record, outer, started, attempt, exc)
            return
        delivery.add_done_callback(
            lambda done: self._on_delivery(record, outer, started, attempt, done)
        )

    def _on_delivery(
        self,
        record: Record,
        outer: asyncio.Future[RecordMetadata],
        started: float,
        attempt: int,
        done: asyncio.Future[RecordMetadata],
    ) -> None:
        if done.cancelled():
            self._on_failure(record, outer, started, attempt, asyncio.CancelledError())
            return
        exc = done.exception()
        if exc is not None:
            self._on_failure(record, outer, started, attempt, exc)
            return
        produced, produced_bytes, latency = self._metrics.on_topic(record.topic)
        produced.inc()
        produced_bytes.inc(len(record.value))
        latency.observe(time.perf_counter() - started)
        self._settle(outer, result=done.result())

    def _on_failure(
        self,
        record: Record,
        outer: asyncio.Future[RecordMetadata],
        started: float,
        attempt: int,
        exc: BaseException,
    ) -> None:
        reason = _reason(exc)
        self._metrics.errors.labels(record.topic, reason).inc()
        if outer.done():
            return
        if isinstance(exc, _TOPIC_MISSING):
            self._repair_topics()
        if _is_retriable(exc, attempt) and not self._closing:
            delay = full_jitter_backoff(attempt, cap_s=RETRY_BACKOFF_CAP_S)
            if attempt == 0 or attempt % 10 == 0:
                log.warning(
                    "kafka delivery failed, retrying",
                    topic=record.topic,
                    reason=reason,
                    attempt=attempt + 1,
                    retry_in_s=round(delay, 3),
                )
            self._metrics.retries.labels(record.topic).inc()
            task = asyncio.get_running_loop().create_task(
                self._retry(record, outer, started, attempt + 1, delay)
            )
            self._retry_tasks.add(task)
            task.add_done_callback(self._retry_tasks.discard)
            return
        log.error(
            "kafka delivery failed for good", topic=record.topic, reason=reason, error=str(exc)
        )
        self._settle(outer, error=DeliveryError(record.topic, f"{reason}: {exc}"))

    def _repair_topics(self) -> None:
        """Run ``on_topic_missing`` (ensure topics) once at a time, at most every few seconds."""
        if self._on_topic_missing is None or (self._repair and not self._repair.done()):
            return
        if time.monotonic() - self._repaired_at < TOPIC_REPAIR_INTERVAL_S:
            return
        self._repaired_at = time.monotonic()
        self._repair = asyncio.get_running_loop().create_task(self._run_repair())

    async def _run_repair(self) -> None:
        assert self._on_topic_missing is not None
        log.warning("broker lost a topic, ensuring topics again")
        try:
            await self._on_topic_missing()
        except Exception as exc:  # noqa: BLE001 - logged; the next failure tries again
            log.warning("ensuring topics failed", error=str(exc))

    async def _retry(
        self,
        record: Record,
        outer: asyncio.Future[RecordMetadata],
        started: float,
        attempt: int,
        delay: float,
    ) -> None:
        await asyncio.sleep(delay)
        if outer.done():
            return
        if self._closing or self._producer is None:
            self._settle(
                outer, error=DeliveryError(record.topic, "producer stopped before delivery")
            )
            return
        await self._attempt(record, outer, started, attempt)

    async def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every record sent so far is acknowledged; return how many are still not."""
        if not self._inflight:
            return 0
        _, not_done = await asyncio.wait(set(self._inflight), timeout=timeout_s)
        return len(not_done)

    async def stop(self, timeout_s: float = 10.0) -> int:
        """Flush for at most ``timeout_s``, then close; return the number of records not delivered.

        Safe to call twice. Undelivered records are counted (reason ``unsent_at_stop``) and logged.
        """
        if self._producer is None:
            return 0
        unsent = await self.flush(timeout_s)
        self._closing = True
        for task in [*self._retry_tasks, *([self._repair] if self._repair else [])]:
            task.cancel()
        for outer in list(self._inflight):
            self._settle(outer, error=DeliveryError("", "producer stopped before delivery"))
        if unsent:
            self._metrics.errors.labels("", "unsent_at_stop").inc(unsent)
            log.error("records not delivered at stop", count=unsent)
        producer, self._producer = self._producer, None
        await producer.stop()
        return unsent


class ConsumerMetrics:
    """One set per registry, shared by every consumer of the daemon."""

    _per_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ConsumerMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        if registry not in cls._per_registry:
            cls._per_registry[registry] = cls(registry)
        return cls._per_registry[registry]

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "cryptoviz_kafka_messages_consumed",
            "Records fetched from Kafka.",
            ["topic"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "cryptoviz_dead_letters",
            "Records that could not be decoded or validated, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.lag = Gauge(
            "cryptoviz_kafka_consumer_lag_messages",
            "High watermark minus position, summed over the topic's assigned partitions.",
            ["group", "topic"],
            registry=registry,
        )
        self.commits = Counter(
            "cryptoviz_kafka_commits",
            "Offset commits, by outcome.",
            ["group", "outcome"],
            registry=registry,
        )
        self.rebuilds = Counter(
            "cryptoviz_kafka_consumer_rebuilds",
            "Times the consumer was rebuilt because the broker lost its group or topics.",
            ["group"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed decoding, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """A record that decoded into its topic's payload."""

    record: ConsumerRecord[bytes, bytes]
    payload: Payload


# Commit failures that mean the broker forgot the group or the topic (a restarted embedded broker,
# or a deleted topic on Apache Kafka): the consumer must be rebuilt to make progress again.
_LOST_STATE = (UnknownTopicOrPartitionError, UnknownMemberIdError, IllegalGenerationError)


class Consumer:
    """A group consumer with manual commits, lag metrics, dead letters and self-repair."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        topics: Sequence[str],
        registry: CollectorRegistry,
        auto_offset_reset: str = "latest",
        on_rebuild: Callable[[], Awaitable[None]] | None = None,
        max_poll_records: int = 5_000,
    ) -> None:
        self._settings = settings
        self.group_id = group_id
        self.topics = tuple(topics)
        self._auto_offset_reset = auto_offset_reset
        self._on_rebuild = on_rebuild
        self._max_poll_records = max_poll_records
        self._metrics = ConsumerMetrics.of(registry)
        self._consumer: AIOKafkaConsumer | None = None
        self._commit_failures = 0
        self._positions: dict[TopicPartition, int] = {}

    def _build(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self.topics,
            **aiokafka_common(self._settings),
            client_id=f"{self._settings.kafka_client_id}-{self.group_id}",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._auto_offset_reset,
            max_poll_records=self._max_poll_records,
            isolation_level="read_committed",
        )

    @property
    def running(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = self._build()
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise BusUnavailable(
                f"cannot reach Kafka at {self._settings.kafka_bootstrap}: {exc}"
            ) from None
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._positions.clear()
        if consumer is not None:
            first_generation = first_generation_member(consumer)
            await consumer.stop()
            if first_generation is not None:
                await leave_group(self._settings, self.group_id, first_generation)

    async def fetch(self, timeout_s: float = 1.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Up to ``max_poll_records`` records across partitions, in offset order per partition."""
        if self._consumer is None:
            raise RuntimeError("consumer is not running")
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=self._max_poll_records
        )
        records: list[ConsumerRecord[bytes, bytes]] = []
        for tp, batch in batches.items():
            self._metrics.consumed.labels(tp.topic).inc(len(batch))
            records.extend(batch)
        self._update_lag(records)
        return records

    def _update_lag(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        # Positions are tracked from what was fetched: aiokafka's position() is a coroutine that
        # may wait on the coordinator, too slow for every poll.
        assert self._consumer is not None
        for record in records:
            self._positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        per_topic: dict[str, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if highwater is None or position is None:
                continue
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(0, highwater - position)
        for topic, lag in per_topic.items():
            self._metrics.lag.labels(self.group_id, topic).set(lag)

    def decode(
        self, records: Iterable[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[Decoded], list[DeadLetter]]:
        """Split records into payloads and dead letters; dead letters are counted and logged."""
        good: list[Decoded] = []
        dead: list[DeadLetter] = []
        limit = self._settings.kafka_max_message_bytes
        for record in records:
            try:
                payload = decode(record.topic, record.value, record.headers, max_value_bytes=limit)
            except EnvelopeError as exc:
                self._metrics.dead_letters.labels(record.topic, exc.kind).inc()
                log.warning(
                    "dead letter",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    kind=exc.kind,
                    reason=str(exc),
                )
                dead.append(
                    DeadLetter(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.key,
                        record.value,
                        exc.kind,
                        str(exc),
                    )
                )
            else:
                good.append(Decoded(record, payload))
        return good, dead

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> bool:
        """Commit ``offsets`` (next offset to read per partition; default: consumed positions).

        Returns False when the commit failed; after a failure that means the broker lost the
        group or topic, the consumer is rebuilt (topics re-ensured via ``on_rebuild``) and the
        uncommitted records will be delivered again, which idempotent writers absorb.
        """
        if self._consumer is None:
            raise RuntimeError("consumer is not running")
        try:
            await self._consumer.commit(dict(offsets) if offsets is not None else None)
        except (CommitFailedError, KafkaError) as exc:
            self._metrics.commits.labels(self.group_id, "failed").inc()
            self._commit_failures += 1
            log.warning(
                "offset commit failed",
                group=self.group_id,
                reason=_reason(exc),
                consecutive=self._commit_failures,
            )
            if isinstance(exc, _LOST_STATE) or self._commit_failures >= 3:
                await self.rebuild(_reason(exc))
            return False
        self._commit_failures = 0
        self._metrics.commits.labels(self.group_id, "ok").inc()
        return True

    async def rebuild(self, reason: str) -> None:
        log.warning("rebuilding consumer", group=self.group_id, reason=reason)
        self._metrics.rebuilds.labels(self.group_id).inc()
        await self.stop()
        if self._on_rebuild is not None:
            await self._on_rebuild()
        self._commit_failures = 0
        await self.start()

    async def committed(self, tp: TopicPartition) -> int | None:
        if self._consumer is None:
            raise RuntimeError("consumer is not running")
        value = await self._consumer.committed(tp)
        return None if value is None else int(value)

    def assignment(self) -> set[TopicPartition]:
        return set() if self._consumer is None else set(self._consumer.assignment())


def first_generation_member(consumer: AIOKafkaConsumer) -> str | None:
    """The member id, if the consumer is a member of generation 0 of its group.

    aiokafka sends LeaveGroup on stop only when the generation is above 0, Apache Kafka's first
    generation being 1. The embedded broker (Tansu) numbers generations from 0, so a consumer that
    stops in its first generation stays a member there: the group reads Stable, and resets are
    refused, until another member joins. This reads aiokafka's coordinator state (not public API;
    if it changes, the answer is None and nothing else happens).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "generation", None) != 0:
        return None
    member_id = getattr(coordinator, "member_id", None)
    return str(member_id) if member_id else None


async def leave_group(settings: Settings, group: str, member_id: str) -> None:
    """Best effort, like aiokafka's own LeaveGroup: a failure leaves what Kafka would anyway."""
    client = AIOKafkaClient(
        **aiokafka_common(settings), client_id=f"{settings.kafka_client_id}-leave"
    )
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        await client.send(
            node, LeaveGroupRequest(group, member_id), group=ConnectionGroup.COORDINATION
        )
    except KafkaError:
        pass
    finally:
        await client.close()


def next_offsets(records: Iterable[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """The offsets to commit after processing ``records``: last offset + 1 per partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets
