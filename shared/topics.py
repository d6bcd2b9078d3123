"""The topic registry (seed values as defaults, overridable by settings) and its provisioning.

Topics are created and their configs reconciled by code, idempotently: ``cryptoviz topics ensure``
and every producing daemon at start call :func:`ensure_topics`. Provisioning uses confluent-kafka's
admin client because it speaks IncrementalAlterConfigs, which aiokafka's admin lacks (and which is
the only config-altering call the embedded broker supports).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from shared.envelope import PAYLOADS
from shared.kafka_config import librdkafka_config
from shared.settings import Settings, TopicOverride

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """Everything an operator configures about one topic."""

    name: str
    key: str
    retention_ms: int
    segment_ms: int
    partitions: int = 1
    replication_factor: int = 1
    min_insync_replicas: int = 1
    cleanup_policy: str = "delete"
    compression_type: str = "lz4"

    @property
    def configs(self) -> dict[str, str]:
        """The broker-side topic configs this spec asks for."""
        return {
            "retention.ms": str(self.retention_ms),
            "segment.ms": str(self.segment_ms),
            "cleanup.policy": self.cleanup_policy,
            "compression.type": self.compression_type,
            "min.insync.replicas": str(self.min_insync_replicas),
        }


# The seed's table ("Détail des configurations"): retention, segment; the key is the payload's.
# The seed's consumer groups ("Spark Jobs et groupes"), one per Spark job, keyed by job name.
CONSUMER_GROUPS: Final = {"ingestion": "spark-job-ingestion", "analytics": "spark-job-analytics"}

_SEED: Final[dict[str, tuple[int, int]]] = {
    "rawarticle": (7 * DAY_MS, DAY_MS),
    "rawticker": (7 * DAY_MS, HOUR_MS),
    "rawtrade": (7 * DAY_MS, HOUR_MS),
    "rawalert": (DAY_MS, DAY_MS),
}


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """The registry as configured: seed defaults, then global settings, then per-topic overrides."""
    specs = {}
    for name, payload in PAYLOADS.items():
        retention_ms, segment_ms = _SEED[name]
        override = settings.topics.get(name) or TopicOverride()
        specs[name] = TopicSpec(
            name=name,
            key=payload.key_field,
            retention_ms=_pick(override.retention_ms, retention_ms),
            segment_ms=_pick(override.segment_ms, segment_ms),
            partitions=_pick(override.partitions, settings.topic_partitions),
            replication_factor=_pick(
                override.replication_factor, settings.topic_replication_factor
            ),
            min_insync_replicas=settings.topic_min_insync_replicas,
        )
    return specs


def _pick(override: int | None, default: int) -> int:
    return default if override is None else override


class TopicError(Exception):
    """Provisioning failed; the message says which topic and what the broker answered."""


@dataclass(slots=True)
class TopicChange:
    """What :func:`ensure_topics` did, or found, for one topic."""

    topic: str
    action: Literal["created", "updated", "unchanged", "drift"]
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


class TopicAdmin:
    """A thin asyncio face on confluent-kafka's admin client (which is thread-based)."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keep import time low

        config = librdkafka_config(settings)
        self._timeout_s = timeout_s
        self._admin = AdminClient(config)

    async def list_topics(self) -> dict[str, TopicState]:
        return await asyncio.to_thread(self._list_topics_sync, None)

    async def describe(self, names: Iterable[str]) -> dict[str, TopicState]:
        wanted = list(names)
        found = await asyncio.to_thread(self._list_topics_sync, wanted)
        return {name: found[name] for name in wanted if name in found}

    def _list_topics_sync(self, names: Sequence[str] | None) -> dict[str, TopicState]:
        from confluent_kafka import KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
            ConfigResource,
            ResourceType,
        )

        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise TopicError(f"cannot list topics: {_kafka_reason(exc)}") from None
        topics = {
            name: meta
            for name, meta in metadata.topics.items()
            if not name.startswith("__") and (names is None or name in names)
        }
        if not topics:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
        configs: dict[str, dict[str, str]] = {}
        for resource, future in self._admin.describe_configs(
            resources, request_timeout=self._timeout_s
        ).items():
            try:
                entries = future.result()
            except KafkaException as exc:
                raise TopicError(
                    f"cannot describe topic {resource.name}: {_kafka_reason(exc)}"
                ) from None
            configs[resource.name] = {
                key: entry.value for key, entry in entries.items() if entry.value is not None
            }
        return {
            name: TopicState(
                name=name,
                partitions=len(meta.partitions),
                replication_factor=min(
                    (len(p.replicas) for p in meta.partitions.values()), default=0
                ),
                configs=configs.get(name, {}),
            )
            for name, meta in topics.items()
        }

    async def create(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create topics; return the names that already existed (a concurrent creator won)."""
        return await asyncio.to_thread(self._create_sync, specs)

    def _create_sync(self, specs: Sequence[TopicSpec]) -> list[str]:
        from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

        new = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.configs,
            )
            for spec in specs
        ]
        existed = []
        for name, future in self._admin.create_topics(new, request_timeout=self._timeout_s).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    existed.append(name)
                    continue
                raise TopicError(f"cannot create topic {name}: {_kafka_reason(exc)}") from None
        return existed

    async def set_configs(self, topic: str, configs: dict[str, str]) -> None:
        await asyncio.to_thread(self._set_configs_sync, topic, configs)

    def _set_configs_sync(self, topic: str, configs: dict[str, str]) -> None:
        from confluent_kafka import KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            ResourceType,
        )

        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in configs.items()
        ]
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        for future in self._admin.incremental_alter_configs(
            [resource], request_timeout=self._timeout_s
        ).values():
            try:
                future.result()
            except KafkaException as exc:
                raise TopicError(
                    f"cannot alter configs of topic {topic}: {_kafka_reason(exc)}"
                ) from None

    async def add_partitions(self, topic: str, total: int) -> None:
        await asyncio.to_thread(self._add_partitions_sync, topic, total)

    def _add_partitions_sync(self, topic: str, total: int) -> None:
        from confluent_kafka import KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import NewPartitions  # type: ignore[attr-defined]  # noqa: PLC0415

        for future in self._admin.create_partitions(
            [NewPartitions(topic, total)], request_timeout=self._timeout_s
        ).values():
            try:
                future.result()
            except KafkaException as exc:
                raise TopicError(
                    f"cannot grow topic {topic} to {total} partitions: {_kafka_reason(exc)}"
                ) from None


def _kafka_reason(exc: Exception) -> str:
    error: Any = exc.args[0] if exc.args else exc
    text = error.str() if hasattr(error, "str") else str(error)
    return str(text)


async def ensure_topics(
    settings: Settings, names: Iterable[str] | None = None, *, admin: TopicAdmin | None = None
) -> list[TopicChange]:
    """Create missing topics and reconcile configs and partition counts; safe to run anytime.

    Partitions are only ever added (Kafka cannot remove them); a topic with more partitions than
    asked, or a replication factor that differs, is reported as ``drift`` for an operator to act on.
    """
    specs = topic_specs(settings)
    wanted = [specs[name] for name in (names or specs)]
    admin = admin or TopicAdmin(settings)
    existing = await admin.describe(spec.name for spec in wanted)
    missing = [spec for spec in wanted if spec.name not in existing]
    changes = []
    if missing:
        raced = set(await admin.create(missing))
        if raced:
            # Another process created these between our describe and create: reconcile them.
            existing.update(await admin.describe(raced))
        changes += [TopicChange(spec.name, "created") for spec in missing if spec.name not in raced]
    for spec in wanted:
        state = existing.get(spec.name)
        if state is not None:
            changes.append(await _reconcile(admin, spec, state))
    order = {spec.name: index for index, spec in enumerate(wanted)}
    return sorted(changes, key=lambda change: order[change.topic])


async def _reconcile(admin: TopicAdmin, spec: TopicSpec, state: TopicState) -> TopicChange:
    change = TopicChange(spec.name, "unchanged")
    differing = {
        key: value for key, value in spec.configs.items() if state.configs.get(key) != value
    }
    if differing:
        await admin.set_configs(spec.name, differing)
        change.action = "updated"
        change.details += [
            f"{key}: {state.configs.get(key, '(default)')} -> {value}"
            for key, value in differing.items()
        ]
    if state.partitions < spec.partitions:
        await admin.add_partitions(spec.name, spec.partitions)
        change.action = "updated"
        change.details.append(f"partitions: {state.partitions} -> {spec.partitions}")
    elif state.partitions > spec.partitions:
        change.details.append(
            f"has {state.partitions} partitions, {spec.partitions} asked; Kafka cannot remove any"
        )
    if state.replication_factor and state.replication_factor != spec.replication_factor:
        change.details.append(
            f"replication factor is {state.replication_factor}, {spec.replication_factor} asked;"
            " reassign partitions to change it"
        )
    if change.action == "unchanged" and change.details:
        change.action = "drift"
    return change
