"""Partition offsets as an operator needs them: where each log starts and ends, what is at a time.

End offsets are fetch high watermarks, not ListOffsets "latest". Both agree on Apache Kafka; the
embedded broker (Tansu) answers ListOffsets "latest" with the last batch's base offset + 1, short of
the log end by the size of that batch minus one. Measured on Tansu 0.6 with 7 records written as
batches of 3 and 4: aiokafka ``end_offsets`` 4, confluent ``get_watermark_offsets`` and
``list_offsets(latest)`` 4 (they send ListOffsets too), while a fetch answers high watermark 7, the
right value. So the reader asks ListOffsets for a lower bound L, positions a consumer at L and takes
the high watermark of the fetch response: on Kafka that fetch is empty (L is the end), on Tansu it
carries at most the last batch. The result is exact on both, for one fetch round trip.

Low watermarks come from ListOffsets "earliest", which both brokers answer right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from services.ops.errors import OperationFailed
from shared.kafka_config import aiokafka_common
from shared.settings import Settings

# An empty partition answers a fetch after this long; short, so an end-offset read stays quick.
FETCH_WAIT_MS: Final = 100


@dataclass(frozen=True, slots=True)
class Watermarks:
    """First offset still in the log (low) and the offset the next record will get (high)."""

    low: int
    high: int

    @property
    def records(self) -> int:
        """Records in the log (exact with the delete policy and no transactions)."""
        return max(0, self.high - self.low)


def kafka_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OffsetReader:
    """A group-less consumer and a metadata client: reads offsets, never commits any."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        common = aiokafka_common(settings)
        self._client = AIOKafkaClient(**common, client_id=f"{settings.kafka_client_id}-ops")
        self._consumer = AIOKafkaConsumer(
            **common,
            client_id=f"{settings.kafka_client_id}-ops",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )

    async def __aenter__(self) -> Self:
        try:
            await self._client.bootstrap()
            await self._consumer.start()
        except KafkaError as exc:
            await self.close()
            raise OperationFailed(
                f"cannot reach Kafka at {self._settings.kafka_bootstrap}: {kafka_reason(exc)}"
            ) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._consumer.stop()
        await self._client.close()

    async def topics(self) -> dict[str, list[TopicPartition]]:
        """Every topic on the broker (internal ones left out) with its partitions, sorted."""
        try:
            cluster = await self._client.fetch_all_metadata()
        except KafkaError as exc:
            raise OperationFailed(f"cannot read topic metadata: {kafka_reason(exc)}") from None
        found: dict[str, list[TopicPartition]] = {}
        for topic in sorted(cluster.topics(exclude_internal_topics=True)):
            if topic.startswith("__"):
                continue
            partitions = cluster.partitions_for_topic(topic) or set()
            found[topic] = [TopicPartition(topic, p) for p in sorted(partitions)]
        return found

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Partitions of ``topics``; an unknown topic is an error naming it."""
        wanted = list(dict.fromkeys(topics))
        existing = await self.topics()
        unknown = [topic for topic in wanted if topic not in existing]
        if unknown:
            there = ", ".join(existing) or "none"
            raise OperationFailed(
                f"unknown topic {', '.join(unknown)}; topics on the broker: {there}"
            )
        return [tp for topic in wanted for tp in existing[topic]]

    async def watermarks(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, Watermarks]:
        """Low and high watermarks of each partition; the high one from a fetch (module doc)."""
        tps = list(dict.fromkeys(partitions))
        if not tps:
            return {}
        consumer = self._consumer
        try:
            lows = await consumer.beginning_offsets(tps)
            bounds = await consumer.end_offsets(tps)
            # A fresh assignment has fresh fetch state: no high watermark until a response says.
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, bounds[tp])
            highs: dict[TopicPartition, int] = {}
            deadline = asyncio.get_running_loop().time() + self._timeout_s
            while True:
                for tp in tps:
                    highwater = consumer.highwater(tp)
                    if tp not in highs and highwater is not None:
                        highs[tp] = int(highwater)
                waiting = [tp for tp in tps if tp not in highs]
                if not waiting:
                    break
                if asyncio.get_running_loop().time() >= deadline:
                    names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in waiting)
                    raise OperationFailed(
                        f"no fetch answer within {self._timeout_s:g} s for {names}"
                    )
                # Drains what the fetch brought (at most the last batch), which lets the next
                # fetch of that partition, and its high watermark, through.
                await consumer.getmany(*waiting, timeout_ms=2 * FETCH_WAIT_MS)
        except KafkaError as exc:
            raise OperationFailed(f"cannot read offsets: {kafka_reason(exc)}") from None
        finally:
            consumer.unsubscribe()
        return {
            tp: Watermarks(low=int(lows[tp]), high=max(highs[tp], int(bounds[tp]))) for tp in tps
        }

    async def offsets_at(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        """The earliest offset whose record timestamp is at or after ``timestamp_ms``, per
        partition; None when no record is that recent.

        ListOffsets by timestamp. The embedded broker (Tansu) answers "none" with offset 0 and
        timestamp -1 instead of offset -1, so a -1 timestamp counts as none too. Tansu also
        indexes by the time the broker appended a record rather than the record's own timestamp:
        for live data the two are close; for records produced with old event times, Tansu's
        answer is earlier than Apache Kafka's.
        """
        try:
            found: dict[TopicPartition, Any] = await self._consumer.offsets_for_times(
                dict.fromkeys(partitions, timestamp_ms)
            )
        except KafkaError as exc:
            raise OperationFailed(f"cannot look offsets up by time: {kafka_reason(exc)}") from None
        return {
            tp: None if hit is None or hit.timestamp < 0 else int(hit.offset)
            for tp, hit in found.items()
        }
