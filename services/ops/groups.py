"""Consumer groups: list, describe (members, committed offsets, lag) and offset resets.

Reads go through aiokafka's admin client: on the embedded broker it is the one that sees a group's
members (confluent's describe reports none there). Offsets are fetched for explicit partitions
(the embedded broker cannot answer an OffsetFetch for "all partitions" to aiokafka), and groups are
described one per request (the embedded broker garbles every group after the first in a
multi-group DescribeGroups answer).

A reset works like ``kafka-consumer-groups.sh --reset-offsets``: it prints the plan and commits
nothing unless asked to execute, refuses while the group has members, and commits through the
admin API (an OffsetCommit outside any generation, which the broker only accepts for an inactive
group), the same path as Kafka's own tool. Targets are clamped into [low, high] watermarks, so a
consumer that starts from them never hits an out-of-range offset.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Self

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, for_code

from services.ops.errors import OperationFailed
from services.ops.offsets import OffsetReader, Watermarks, kafka_reason
from shared.kafka_config import aiokafka_common, librdkafka_config
from shared.settings import Settings
from shared.topics import CONSUMER_GROUPS

# What `cryptoviz lag` shows by default.
SEED_GROUPS: Final = tuple(CONSUMER_GROUPS.values())

# Kafka's tool resets a group only in these states; anything else has (or is getting) members.
INACTIVE_STATES: Final = frozenset({"Empty", "Dead"})


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    # None when the broker does not say (the embedded broker sends no assignments).
    partitions: tuple[TopicPartition, ...] | None


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[Member, ...]

    def owner(self, tp: TopicPartition) -> Member | None:
        for member in self.members:
            if member.partitions is not None and tp in member.partitions:
                return member
        return None


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition as a group sees it: where the group is, where the log is."""

    topic: str
    partition: int
    committed: int | None
    low: int
    high: int
    member: Member | None = None

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.high - self.committed)

    def as_row(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "low": self.low,
            "end": self.high,
            "lag": self.lag,
            "consumer_id": self.member.member_id if self.member else None,
            "host": self.member.host if self.member else None,
            "client_id": self.member.client_id if self.member else None,
        }


@dataclass(frozen=True, slots=True)
class ResetTo:
    """Where a reset moves each partition."""

    kind: Literal["earliest", "latest", "datetime", "shift"]
    timestamp_ms: int | None = None
    shift: int = 0

    @classmethod
    def at_datetime(cls, text: str) -> ResetTo:
        """ISO 8601 (the seed's ``2024-01-01T00:00:00.000``); without a zone, local time, as
        Kafka's tool reads it."""
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise OperationFailed(
                f"--to-datetime {text!r} is not an ISO 8601 date-time "
                "(e.g. 2024-01-01T00:00:00.000 or 2024-01-01T00:00:00+00:00)"
            ) from None
        return cls("datetime", timestamp_ms=round(moment.astimezone().timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class PlannedReset:
    topic: str
    partition: int
    current: int | None
    target: int

    def as_row(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "current": self.current,
            "target": self.target,
        }


@dataclass(slots=True)
class ResetOutcome:
    group: str
    state: str
    executed: bool
    plan: list[PlannedReset] = field(default_factory=list)


class GroupAdmin:
    """Read and reset consumer groups; an async context manager holding the Kafka clients."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._admin = AIOKafkaAdminClient(
            **aiokafka_common(settings), client_id=f"{settings.kafka_client_id}-ops"
        )
        self.offsets = OffsetReader(settings, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        try:
            await self._admin.start()
        except KafkaError as exc:
            await self._admin.close()
            # Its consumer exists already; closed, it does not warn "Unclosed" at collection.
            await self.offsets.close()
            raise OperationFailed(
                f"cannot reach Kafka at {self._settings.kafka_bootstrap}: {kafka_reason(exc)}"
            ) from None
        try:
            await self.offsets.__aenter__()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.offsets.close()
        await self._admin.close()

    async def names(self) -> list[str]:
        try:
            listed = await self._admin.list_consumer_groups()
        except KafkaError as exc:
            raise OperationFailed(f"cannot list consumer groups: {kafka_reason(exc)}") from None
        return sorted({str(entry[0]) for entry in listed})

    async def require(self, group: str) -> None:
        """Fail with one clear line unless the broker knows ``group``."""
        known = await self.names()
        if group not in known:
            listing = ", ".join(known) if known else "none"
            raise OperationFailed(
                f"unknown consumer group {group}; groups on the broker: {listing}"
            )

    async def describe(self, group: str) -> GroupInfo:
        try:
            responses = await self._admin.describe_consumer_groups([group])
        except KafkaError as exc:
            raise OperationFailed(f"cannot describe group {group}: {kafka_reason(exc)}") from None
        described = responses[0].to_object()["groups"][0]
        if described["error_code"]:
            error = for_code(described["error_code"]).__name__
            raise OperationFailed(f"cannot describe group {group}: the broker answered {error}")
        return GroupInfo(
            group=group,
            state=str(described["state"]),
            protocol_type=str(described["protocol_type"]),
            protocol=str(described["protocol"]),
            members=tuple(
                Member(
                    member_id=str(member["member_id"]),
                    client_id=str(member["client_id"]),
                    host=str(member["client_host"]),
                    partitions=_assigned(member["member_assignment"]),
                )
                for member in described["members"]
            ),
        )

    async def committed(
        self, group: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        if not partitions:
            return {}
        try:
            found = await self._admin.list_consumer_group_offsets(
                group, partitions=list(partitions)
            )
        except KafkaError as exc:
            raise OperationFailed(
                f"cannot read committed offsets of group {group}: {kafka_reason(exc)}"
            ) from None
        committed: dict[TopicPartition, int | None] = {}
        for tp in partitions:
            entry = found.get(tp)
            committed[tp] = None if entry is None or entry.offset < 0 else int(entry.offset)
        return committed

    async def partition_offsets(
        self, group: str, info: GroupInfo, topics: Sequence[str] | None = None
    ) -> list[PartitionOffsets]:
        """Committed offset, watermarks and owner of every partition the group has a committed
        offset on or is assigned (or of every partition of ``topics``)."""
        if topics:
            candidates = await self.offsets.partitions(topics)
        else:
            candidates = [tp for tps in (await self.offsets.topics()).values() for tp in tps]
        committed = await self.committed(group, candidates)
        assigned = {tp for m in info.members for tp in (m.partitions or ())}
        shown = [
            tp for tp in candidates if topics or committed.get(tp) is not None or tp in assigned
        ]
        marks = await self.offsets.watermarks(shown)
        return [
            PartitionOffsets(
                topic=tp.topic,
                partition=tp.partition,
                committed=committed.get(tp),
                low=marks[tp].low,
                high=marks[tp].high,
                member=info.owner(tp),
            )
            for tp in shown
        ]

    async def plan_reset(
        self, group: str, topics: Sequence[str], to: ResetTo
    ) -> list[PlannedReset]:
        partitions = await self.offsets.partitions(topics)
        committed = await self.committed(group, partitions)
        marks = await self.offsets.watermarks(partitions)
        at_time: dict[TopicPartition, int | None] = {}
        if to.kind == "datetime":
            assert to.timestamp_ms is not None
            at_time = await self.offsets.offsets_at(partitions, to.timestamp_ms)
        plan = []
        for tp in partitions:
            current = committed[tp]
            target = _target(tp, to, current, marks[tp], at_time.get(tp))
            plan.append(PlannedReset(tp.topic, tp.partition, current, target))
        return plan

    async def reset(
        self, group: str, topics: Sequence[str], to: ResetTo, *, execute: bool
    ) -> ResetOutcome:
        await self.require(group)
        info = await self.describe(group)
        plan = await self.plan_reset(group, topics, to)
        outcome = ResetOutcome(group=group, state=info.state, executed=False, plan=plan)
        if not execute:
            return outcome
        if info.state not in INACTIVE_STATES or info.members:
            # Kafka's tool says exactly this (ResetOffsets on a group with members).
            raise OperationFailed(
                f"Assignments can only be reset if the group '{group}' is inactive, "
                f"but the current state is {info.state}."
            )
        await asyncio.to_thread(self._commit_sync, group, plan)
        written = await self.committed(group, [TopicPartition(r.topic, r.partition) for r in plan])
        wrong = [
            f"{r.topic}-{r.partition}"
            for r in plan
            if written.get(TopicPartition(r.topic, r.partition)) != r.target
        ]
        if wrong:
            raise OperationFailed(
                f"the broker accepted the reset of group {group} but reports other offsets for "
                f"{', '.join(wrong)}"
            )
        outcome.executed = True
        return outcome

    def _commit_sync(self, group: str, plan: Sequence[PlannedReset]) -> None:
        from confluent_kafka import (  # noqa: PLC0415 - keep import time low
            ConsumerGroupTopicPartitions,
            KafkaException,
        )
        from confluent_kafka import TopicPartition as ConfluentPartition  # noqa: PLC0415
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        admin = AdminClient(librdkafka_config(self._settings))
        request = ConsumerGroupTopicPartitions(
            group, [ConfluentPartition(r.topic, r.partition, r.target) for r in plan]
        )
        futures = admin.alter_consumer_group_offsets([request], request_timeout=self._timeout_s)
        try:
            result = futures[group].result(timeout=self._timeout_s)
        except concurrent.futures.TimeoutError:
            raise OperationFailed(
                f"cannot reset group {group}: no answer within {self._timeout_s:g} s"
            ) from None
        except KafkaException as exc:
            raise OperationFailed(f"cannot reset group {group}: {_confluent_reason(exc)}") from None
        failed = [
            f"{tp.topic}-{tp.partition}: {tp.error.str()}"
            for tp in result.topic_partitions
            if tp.error is not None
        ]
        if failed:
            raise OperationFailed(f"cannot reset group {group}: {'; '.join(failed)}")


def _target(
    tp: TopicPartition,
    to: ResetTo,
    current: int | None,
    marks: Watermarks,
    at_time: int | None,
) -> int:
    if to.kind == "earliest":
        wanted = marks.low
    elif to.kind == "latest":
        wanted = marks.high
    elif to.kind == "datetime":
        # No record that recent: the log end, as Kafka's tool does.
        wanted = marks.high if at_time is None else at_time
    else:
        if current is None:
            raise OperationFailed(
                f"cannot shift {tp.topic}-{tp.partition}: the group has no committed offset there"
            )
        wanted = current + to.shift
    return min(max(wanted, marks.low), marks.high)


def _assigned(raw: Any) -> tuple[TopicPartition, ...] | None:
    if not raw:
        return None
    try:
        assignment = ConsumerProtocolMemberAssignment.decode(bytes(raw))
    except Exception:  # noqa: BLE001 - another protocol's bytes: the assignment is unknown
        return None
    return tuple(sorted(assignment.partitions()))


def _confluent_reason(exc: Exception) -> str:
    error: Any = exc.args[0] if exc.args else exc
    return str(error.str() if hasattr(error, "str") else error)


async def group_summaries(admin: GroupAdmin) -> list[dict[str, Any]]:
    """One row per group on the broker: state, members, protocol."""
    rows = []
    for name in await admin.names():
        info = await admin.describe(name)
        rows.append(
            {
                "group": name,
                "state": info.state,
                "members": len(info.members),
                "protocol_type": info.protocol_type or None,
                "protocol": info.protocol or None,
            }
        )
    return rows


async def group_description(admin: GroupAdmin, group: str) -> dict[str, Any]:
    await admin.require(group)
    info = await admin.describe(group)
    partitions = await admin.partition_offsets(group, info)
    return {
        "group": group,
        "state": info.state,
        "protocol_type": info.protocol_type or None,
        "protocol": info.protocol or None,
        "members": [
            {
                "consumer_id": m.member_id,
                "client_id": m.client_id or None,
                "host": m.host or None,
                "partitions": None
                if m.partitions is None
                else [f"{tp.topic}-{tp.partition}" for tp in m.partitions],
            }
            for m in info.members
        ],
        "partitions": [p.as_row() for p in partitions],
    }
