"""``cryptoviz topics stats``: offsets, counts and the message rate, on a real broker."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.embedded.broker import EmbeddedBroker
from tests.test_cli import on, run
from tests.test_ops_groups import arun, write


async def test_offsets_and_counts_per_partition(private_broker: EmbeddedBroker) -> None:
    env = on(private_broker)
    code, _, err = await arun(
        "cryptoviz", "topics", "ensure", CRYPTOVIZ_TOPICS__RAWTRADE__PARTITIONS="2", **env
    )
    assert code == 0, err
    await write(private_broker, "rawticker", 7)
    code, out, err = await arun(
        "cryptoviz", "topics", "stats", "rawticker", "rawtrade", "--interval", "0", "--json", **env
    )
    assert code == 0, err
    stats = json.loads(out)
    assert stats["interval_s"] == 0
    assert [
        (p["topic"], p["partition"], p["low"], p["high"], p["records"], p["rate_per_s"])
        for p in stats["partitions"]
    ] == [
        # One batch of 7: the high watermark is 7 (ListOffsets on this broker would say 1).
        ("rawticker", 0, 0, 7, 7, None),
        ("rawtrade", 0, 0, 0, 0, None),
        ("rawtrade", 1, 0, 0, 0, None),
    ]
    code, out, _ = await arun("cryptoviz", "topics", "stats", "--interval", "0", **env)
    lines = out.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "LOW", "HIGH", "RECORDS", "RATE_PER_S"]
    assert [line.split()[0] for line in lines[1:]] == [
        "rawarticle",
        "rawticker",
        "rawtrade",
        "rawtrade",
        "rawalert",
    ]


@pytest.mark.slow
async def test_the_rate_is_the_growth_of_the_log_end_over_the_interval(
    private_broker: EmbeddedBroker,
) -> None:
    env = on(private_broker)
    code, _, err = await arun("cryptoviz", "topics", "ensure", "rawticker", **env)
    assert code == 0, err
    await write(private_broker, "rawticker", 10)  # before: counted, not in the rate
    stats_run = asyncio.create_task(
        arun("cryptoviz", "topics", "stats", "rawticker", "--interval", "3", "--json", **env)
    )
    await asyncio.sleep(1.5)  # the first read is done well before this
    await write(private_broker, "rawticker", 30)
    code, out, err = await stats_run
    assert code == 0, err
    [partition] = json.loads(out)["partitions"]
    assert partition["high"] == 40
    # 30 records in a window of a little more than 3 s.
    assert 7.0 <= partition["rate_per_s"] <= 10.0


def test_unknown_or_missing_topics(private_broker: EmbeddedBroker) -> None:
    env = on(private_broker)
    nothing = run("cryptoviz", "topics", "stats", **env)
    assert nothing.returncode == 1
    assert nothing.stderr == (
        "cryptoviz: no registry topic exists yet; run `cryptoviz topics ensure`\n"
    )
    unknown = run("cryptoviz", "topics", "stats", "rawquote", **env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("cryptoviz: unknown topic rawquote; topics on the broker:")
