"""Topic provisioning against a real Kafka-protocol broker: create, reconcile, idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.embedded.broker import EmbeddedBroker
from shared.settings import Settings
from shared.topics import TopicAdmin, TopicError, ensure_topics, topic_specs

MakeSettings = Callable[..., Settings]


@pytest.fixture
def fresh(make_settings: MakeSettings, private_broker: EmbeddedBroker) -> Settings:
    """A broker of its own: these tests create and alter topics."""
    return make_settings(private_broker)


async def test_ensure_creates_every_topic_with_the_seed_configs(fresh: Settings) -> None:
    changes = await ensure_topics(fresh)
    assert [(c.topic, c.action) for c in changes] == [
        ("rawarticle", "created"),
        ("rawticker", "created"),
        ("rawtrade", "created"),
        ("rawalert", "created"),
    ]
    states = await TopicAdmin(fresh).describe(topic_specs(fresh))
    for name, spec in topic_specs(fresh).items():
        assert states[name].partitions == spec.partitions
        for key, value in spec.configs.items():
            assert states[name].configs.get(key) == value, (name, key)


async def test_ensure_twice_changes_nothing_the_second_time(fresh: Settings) -> None:
    await ensure_topics(fresh)
    again = await ensure_topics(fresh)
    assert {c.action for c in again} == {"unchanged"}
    assert all(not c.details for c in again)


async def test_ensure_reconciles_a_config_changed_by_hand(fresh: Settings) -> None:
    await ensure_topics(fresh)
    admin = TopicAdmin(fresh)
    await admin.set_configs("rawalert", {"retention.ms": "1000"})
    changes = {c.topic: c for c in await ensure_topics(fresh)}
    assert changes["rawalert"].action == "updated"
    assert changes["rawalert"].details == ["retention.ms: 1000 -> 86400000"]
    assert (await admin.describe(["rawalert"]))["rawalert"].configs["retention.ms"] == "86400000"
    assert changes["rawticker"].action == "unchanged"


async def test_ensure_applies_setting_overrides_to_existing_topics(
    make_settings: MakeSettings, private_broker: EmbeddedBroker
) -> None:
    await ensure_topics(make_settings(private_broker))
    shorter = make_settings(private_broker, CRYPTOVIZ_TOPICS__RAWTICKER__RETENTION_MS="3600000")
    changes = await ensure_topics(shorter, ["rawticker"])
    assert [(c.topic, c.action) for c in changes] == [("rawticker", "updated")]
    state = (await TopicAdmin(shorter).describe(["rawticker"]))["rawticker"]
    assert state.configs["retention.ms"] == "3600000"


async def test_ensure_reports_more_partitions_than_asked_as_drift(
    make_settings: MakeSettings, private_broker: EmbeddedBroker
) -> None:
    await ensure_topics(make_settings(private_broker, CRYPTOVIZ_TOPIC_PARTITIONS="2"), ["rawtrade"])
    changes = await ensure_topics(make_settings(private_broker), ["rawtrade"])
    assert changes[0].action == "drift"
    assert "has 2 partitions, 1 asked" in changes[0].details[0]


async def test_concurrent_ensures_both_succeed(fresh: Settings) -> None:
    # Two daemons starting at once must not fail on each other's topic creation.
    first, second = await asyncio.gather(ensure_topics(fresh), ensure_topics(fresh))
    created = [c.topic for c in [*first, *second] if c.action == "created"]
    assert sorted(created) == sorted(topic_specs(fresh))
    assert len(first) == len(second) == 4


async def test_ensure_against_an_unreachable_broker_says_so(make_settings: MakeSettings) -> None:
    from tests.conftest import free_port  # noqa: PLC0415

    settings = make_settings(CRYPTOVIZ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    with pytest.raises(TopicError, match="cannot list topics"):
        await ensure_topics(settings, admin=TopicAdmin(settings, timeout_s=1.0))
