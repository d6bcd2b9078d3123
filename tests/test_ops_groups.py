"""``cryptoviz groups`` and ``cryptoviz lag``, as processes, against groups made by real consumers.

Groups are made with aiokafka as the daemons make them: committed offsets, and for the refusal a
subscribed member. Records go in as one batch so that the embedded broker's ListOffsets "latest"
(the last batch's base offset + 1) would differ from the true end, which is what is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.embedded.broker import EmbeddedBroker
from tests.conftest import free_port
from tests.test_cli import BIN, ROOT, on, run


async def arun(*argv: str, limit_s: float = 60, **env: str) -> tuple[int, str, str]:
    """``run`` without blocking the event loop (consumers in this process keep heartbeating)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    process = await asyncio.create_subprocess_exec(
        str(BIN / argv[0]),
        *argv[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**clean, **env},
    )
    out, err = await asyncio.wait_for(process.communicate(), limit_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def value(n: int) -> bytes:
    return json.dumps(
        {
            "pair": "BTC/USD",
            "last": 100.0 + n,
            "bid": 99.0 + n,
            "ask": 101.0 + n,
            "volume_24h": 1.0,
            "timestamp": time.time(),
            "pct_change": 0.0,
        }
    ).encode()


async def write(broker: EmbeddedBroker, topic: str, count: int) -> None:
    """``count`` records in one batch (linger long enough to gather them)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=200)
    await producer.start()
    try:
        sent = [await producer.send(topic, value(n), key=b"BTC/USD") for n in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def commit(broker: EmbeddedBroker, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit like a consumer that is not (any more) a member: the group ends up Empty."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


@pytest.fixture
async def topics(private_broker: EmbeddedBroker) -> EmbeddedBroker:
    code, _, err = await arun("cryptoviz", "topics", "ensure", **on(private_broker))
    assert code == 0, err
    return private_broker


RAWTICKER = TopicPartition("rawticker", 0)
# The embedded broker holds a new group's first join for half the session timeout.
QUICK_JOIN: dict[str, Any] = {"session_timeout_ms": 6_000, "heartbeat_interval_ms": 2_000}


async def test_list_and_describe_a_group_with_committed_offsets(topics: EmbeddedBroker) -> None:
    env = on(topics)
    await write(topics, "rawticker", 5)
    await commit(topics, "ops-test", {RAWTICKER: 3})

    code, out, err = await arun("cryptoviz", "groups", "list", "--json", **env)
    assert code == 0, err
    assert [(g["group"], g["state"], g["members"]) for g in json.loads(out)] == [
        ("ops-test", "Empty", 0)
    ]
    code, out, _ = await arun("cryptoviz", "groups", "list", **env)
    assert out.splitlines()[0].split() == ["GROUP", "STATE", "MEMBERS", "PROTOCOL_TYPE", "PROTOCOL"]

    code, out, err = await arun("cryptoviz", "groups", "describe", "ops-test", "--json", **env)
    assert code == 0, err
    described = json.loads(out)
    assert described["state"] == "Empty"
    assert described["members"] == []
    [partition] = described["partitions"]
    # The end is the true log end (5), not the embedded broker's ListOffsets answer (1).
    assert {k: partition[k] for k in ("topic", "partition", "committed", "end", "lag")} == {
        "topic": "rawticker",
        "partition": 0,
        "committed": 3,
        "end": 5,
        "lag": 2,
    }
    code, out, _ = await arun("cryptoviz", "groups", "describe", "ops-test", **env)
    assert out.startswith("Group: ops-test  state: Empty  members: 0\n")
    assert "rawticker  0          3          5    2" in out

    code, out, err = await arun("cryptoviz", "groups", "describe", "no-such-group", **env)
    assert code == 1
    assert out == ""
    assert err == (
        "cryptoviz: unknown consumer group no-such-group; groups on the broker: ops-test\n"
    )


@pytest.mark.slow
async def test_reset_plans_by_default_and_commits_with_execute(topics: EmbeddedBroker) -> None:
    env = on(topics)
    await write(topics, "rawticker", 5)
    await commit(topics, "replay", {RAWTICKER: 3})

    async def plan(*how: str) -> list[dict[str, Any]]:
        code, out, err = await arun(
            "cryptoviz", "groups", "reset", "replay", "--topic", "rawticker", *how, "--json", **env
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["executed"] is False
        return [(row["current"], row["target"]) for row in result["plan"]]

    assert await plan("--to-earliest") == [(3, 0)]
    assert await plan("--to-latest") == [(3, 5)]
    assert await plan("--shift-by", "-2") == [(3, 1)]
    assert await plan("--shift-by", "100") == [(3, 5)]  # kept within the log
    assert await plan("--shift-by", "-100") == [(3, 0)]
    assert await plan("--to-datetime", "2000-01-01T00:00:00.000+00:00") == [(3, 0)]
    future = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    assert await plan("--to-datetime", future) == [(3, 5)]  # nothing that recent: the end

    code, out, _ = await arun(
        "cryptoviz", "groups", "reset", "replay", "--topic", "rawticker", "--to-earliest", **env
    )
    assert code == 0
    assert out.splitlines() == [
        "GROUP   TOPIC      PARTITION  CURRENT  TARGET",
        "replay  rawticker  0          3        0",
        "dry run: nothing committed; add --execute to commit these offsets",
    ]
    described = json.loads(
        (await arun("cryptoviz", "groups", "describe", "replay", "--json", **env))[1]
    )
    assert described["partitions"][0]["committed"] == 3  # the dry run committed nothing

    code, out, err = await arun(
        "cryptoviz",
        "groups",
        "reset",
        "replay",
        "--topic",
        "rawticker",
        "--to-earliest",
        "--execute",
        **env,
    )
    assert code == 0, err
    assert out.splitlines()[-1] == "committed: group replay starts from the target offsets"
    described = json.loads(
        (await arun("cryptoviz", "groups", "describe", "replay", "--json", **env))[1]
    )
    assert described["partitions"][0]["committed"] == 0

    # A consumer of the group now starts from the new offset, not from its "latest" default.
    consumer = AIOKafkaConsumer(
        "rawticker",
        bootstrap_servers=topics.bootstrap,
        group_id="replay",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **QUICK_JOIN,
    )
    await consumer.start()
    try:
        first = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert first.offset == 0


@pytest.mark.slow
async def test_reset_to_a_datetime_between_two_batches(topics: EmbeddedBroker) -> None:
    env = on(topics)
    await write(topics, "rawticker", 3)
    await asyncio.sleep(1.0)
    between = datetime.now(UTC)
    await asyncio.sleep(1.0)
    await write(topics, "rawticker", 2)
    await commit(topics, "by-time", {RAWTICKER: 5})
    code, out, err = await arun(
        "cryptoviz",
        "groups",
        "reset",
        "by-time",
        "--topic",
        "rawticker",
        "--to-datetime",
        between.isoformat(),
        "--json",
        **env,
    )
    assert code == 0, err
    assert [(r["current"], r["target"]) for r in json.loads(out)["plan"]] == [(5, 3)]


def test_reset_needs_a_known_group_topic_and_datetime(broker: EmbeddedBroker) -> None:
    env = on(broker)
    unknown_group = run(
        "cryptoviz", "groups", "reset", "nobody", "--topic", "rawticker", "--to-earliest", **env
    )
    assert unknown_group.returncode == 1
    assert unknown_group.stderr.startswith("cryptoviz: unknown consumer group nobody;")
    bad_time = run(
        "cryptoviz",
        "groups",
        "reset",
        "g",
        "--topic",
        "rawticker",
        "--to-datetime",
        "yesterday",
        **env,
    )
    assert bad_time.returncode == 1
    assert bad_time.stderr.startswith("cryptoviz: --to-datetime 'yesterday' is not an ISO 8601")
    no_target = run("cryptoviz", "groups", "reset", "g", "--topic", "rawticker", **env)
    assert no_target.returncode == 2  # usage: one of the --to-* options is required


@pytest.mark.slow
async def test_reset_is_refused_while_the_group_has_a_member(topics: EmbeddedBroker) -> None:
    env = on(topics)
    await write(topics, "rawticker", 4)
    member = AIOKafkaConsumer(
        "rawticker",
        bootstrap_servers=topics.bootstrap,
        group_id="busy",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **QUICK_JOIN,
    )
    await member.start()
    try:
        await asyncio.wait_for(member.getone(), 30)
        await member.commit({RAWTICKER: 4})
        code, out, err = await arun(
            "cryptoviz",
            "groups",
            "reset",
            "busy",
            "--topic",
            "rawticker",
            "--to-earliest",
            "--execute",
            **env,
        )
        assert code == 1
        # Kafka's tool says exactly this.
        assert err == (
            "cryptoviz: Assignments can only be reset if the group 'busy' is inactive, "
            "but the current state is Stable.\n"
        )
        code, out, _ = await arun("cryptoviz", "groups", "describe", "busy", "--json", **env)
        described = json.loads(out)
        assert described["state"] == "Stable"
        assert len(described["members"]) == 1
        assert described["partitions"][0]["committed"] == 4  # untouched
    finally:
        await member.stop()


async def test_lag_of_the_seed_groups_and_of_a_named_group(topics: EmbeddedBroker) -> None:
    env = on(topics)
    await write(topics, "rawticker", 6)
    await write(topics, "rawtrade", 2)
    await commit(
        topics,
        "spark-job-ingestion",
        {RAWTICKER: 4, TopicPartition("rawtrade", 0): 2},
    )
    await commit(topics, "dashboard", {RAWTICKER: 1})

    code, out, err = await arun("cryptoviz", "lag", "--group", "dashboard", "--json", **env)
    assert code == 0, err
    assert [
        (r["group"], r["state"], r["topic"], r["committed"], r["end"], r["lag"])
        for r in json.loads(out)
    ] == [
        ("spark-job-ingestion", "Empty", "rawticker", 4, 6, 2),
        ("spark-job-ingestion", "Empty", "rawtrade", 2, 2, 0),
        ("spark-job-analytics", "absent", None, None, None, None),
        ("dashboard", "Empty", "rawticker", 1, 6, 5),
    ]
    code, out, _ = await arun("cryptoviz", "lag", **env)
    assert out.splitlines()[0].split() == [
        "GROUP",
        "STATE",
        "TOPIC",
        "PARTITIONS",
        "COMMITTED",
        "END",
        "LAG",
    ]
    code, _, err = await arun("cryptoviz", "lag", "--group", "nobody", **env)
    assert code == 1
    assert err.startswith("cryptoviz: unknown consumer group nobody;")


@pytest.mark.slow
async def test_a_reset_to_earliest_makes_the_ingestion_group_replay_everything(
    topics: EmbeddedBroker,
) -> None:
    """The seed's replay recipe (reset spark-job-ingestion --to-earliest --execute), end to end
    with a stand-in for the ingestion job: a group consumer of the four topics."""
    env = on(topics)
    for topic in ("rawarticle", "rawticker", "rawtrade", "rawalert"):
        await write(topics, topic, 3)
    partitions = {
        TopicPartition(t, 0): 3 for t in ("rawarticle", "rawticker", "rawtrade", "rawalert")
    }
    await commit(topics, "spark-job-ingestion", partitions)
    for topic in ("rawarticle", "rawticker", "rawtrade", "rawalert"):
        code, _, err = await arun(
            "cryptoviz",
            "groups",
            "reset",
            "spark-job-ingestion",
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
            **env,
        )
        assert code == 0, err
    job = AIOKafkaConsumer(
        "rawarticle",
        "rawticker",
        "rawtrade",
        "rawalert",
        bootstrap_servers=topics.bootstrap,
        group_id="spark-job-ingestion",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **QUICK_JOIN,
    )
    await job.start()
    seen: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + 30
        while len(seen) < 12 and time.monotonic() < deadline:
            batches = await job.getmany(timeout_ms=500)
            seen += [(r.topic, r.offset) for batch in batches.values() for r in batch]
    finally:
        await job.stop()
    assert sorted(seen) == sorted(
        (t, o) for t in ("rawarticle", "rawticker", "rawtrade", "rawalert") for o in range(3)
    )


async def test_an_unreachable_broker_is_one_clean_line() -> None:
    code, out, err = await arun(
        "cryptoviz",
        "groups",
        "describe",
        "spark-job-ingestion",
        CRYPTOVIZ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
    )
    assert code == 1
    assert err.startswith("cryptoviz: cannot reach Kafka at 127.0.0.1:")
    assert "Unclosed" not in err + out  # every client it made is closed
