"""``cryptoviz produce`` and ``cryptoviz consume``, run as processes against a real broker."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from typing import Any

import pytest

from shared.embedded.broker import EmbeddedBroker
from tests.test_cli import BIN, ROOT, on, run

# The seed's own example (seed/kafka.md, "Produire et Consommer"): not a valid article.
SEED_EXAMPLE = 'CoinDesk::{"id": "test-1", "title": "Test Article", "sentiment": {"score": 0.8}}'


def article(website: str = "CoinDesk", number: int = 1) -> dict[str, Any]:
    return {
        "id": f"https://example.com/{website}/{number}",
        "title": "Bitcoin Hits $100K",
        "url": f"https://example.com/{website}/{number}",
        "website": website,
        "summary": "Bitcoin reached...",
        "content": {"text": "..."},
        "published_at": 1705312800.123,
        "scraped_at": 1705312950.456,
        "tags": ["bitcoin", "btc"],
        "sentiment": {"score": 0.8234, "label": "positive"},
        "cryptocurrencies_mentioned": ["BTC"],
    }


def ticker(pair: str = "BTC/USD", last: float = 99950.5) -> dict[str, Any]:
    return {
        "pair": pair,
        "last": last,
        "bid": last - 50,
        "ask": last + 50,
        "volume_24h": 15000.5,
        "timestamp": 1705312345.678,
        "pct_change": 2.51,
    }


def produce(
    broker: EmbeddedBroker, topic: str, lines: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    return subprocess.run(
        [str(BIN / "cryptoviz"), "produce", topic, *args],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **on(broker)},
        check=False,
    )


def records(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_produce_validates_every_line_and_consume_prints_them_back(
    private_broker: EmbeddedBroker,
) -> None:
    good = article("CoinDesk", 1)
    keyless = article("Cointelegraph", 2)
    produced = produce(
        private_broker,
        "rawarticle",
        [
            SEED_EXAMPLE,
            f"CoinDesk::{json.dumps(good)}",
            json.dumps(keyless),  # no key: the payload's website is the key
            f"Decrypt::{json.dumps(article('CoinDesk', 3))}",  # key is not the website
            "",  # blank lines are skipped, not rejected
            "CoinDesk::{not json",
        ],
    )
    assert produced.returncode == 1
    assert produced.stdout.strip() == "2 produced, 3 rejected"
    errors = produced.stderr.splitlines()
    assert errors[:2] == [
        "cryptoviz: line 1: rawarticle.sentiment.label: required field is missing",
        "cryptoviz: line 4: rawarticle.website: the key 'Decrypt' is not the payload's website "
        "'CoinDesk' (rawarticle is keyed by website)",
    ]
    assert errors[2].startswith("cryptoviz: line 6: rawarticle: malformed JSON: ")
    assert len(errors) == 3

    env = on(private_broker)
    pretty = run(
        "cryptoviz", "consume", "rawarticle", "--from-beginning", "--print-key", "--max", "2", **env
    )
    assert pretty.returncode == 0, pretty.stderr
    # The seed's console consumer layout: key, " :: ", then the value (pretty JSON here).
    assert pretty.stdout.startswith('CoinDesk :: {\n  "id": "https://example.com/CoinDesk/1",\n')
    assert "\nCointelegraph :: {\n" in pretty.stdout
    assert pretty.stderr.strip() == "Processed a total of 2 messages"

    compact = run(
        "cryptoviz",
        "consume",
        "rawarticle",
        "--from-beginning",
        "--print-key",
        "--compact",
        "--max",
        "2",
        **env,
    )
    lines = compact.stdout.splitlines()
    assert [line.split(" :: ", 1)[0] for line in lines] == ["CoinDesk", "Cointelegraph"]
    assert [json.loads(line.split(" :: ", 1)[1]) for line in lines] == [good, keyless]

    [first, second] = records(
        run("cryptoviz", "consume", "rawarticle", "--from-beginning", "--json", "--max", "2", **env)
    )
    assert (first["topic"], first["partition"], first["offset"]) == ("rawarticle", 0, 0)
    assert first["key"] == "CoinDesk"
    assert first["value"] == good
    # Envelope headers, and the record time is the event time (the scrape time for articles).
    assert first["headers"]["schema"] == "rawarticle"
    assert first["headers"]["schema-version"] == "1"
    assert first["headers"]["producer"] == "cryptoviz-cli"
    assert first["timestamp"] == 1705312950456
    assert second["key"] == "Cointelegraph"


def test_raw_sends_values_as_given_without_headers(private_broker: EmbeddedBroker) -> None:
    produced = produce(private_broker, "rawarticle", [SEED_EXAMPLE, "no separator here"], "--raw")
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.strip() == "2 produced, 0 rejected"
    [seed, keyless] = records(
        run(
            "cryptoviz",
            "consume",
            "rawarticle",
            "--from-beginning",
            "--json",
            "--max",
            "2",
            **on(private_broker),
        )
    )
    assert seed["key"] == "CoinDesk"
    assert seed["headers"] == {}
    assert seed["value"] == {"id": "test-1", "title": "Test Article", "sentiment": {"score": 0.8}}
    assert keyless["key"] is None
    assert keyless["value"] == "no separator here"


def test_strict_stops_at_the_first_bad_line_and_json_summarises(
    private_broker: EmbeddedBroker,
) -> None:
    produced = produce(
        private_broker,
        "rawticker",
        [
            f"BTC/USD::{json.dumps(ticker())}",
            f"ETH/USD::{json.dumps(ticker('ETH/USD', last=-1))}",
            f"SOL/USD::{json.dumps(ticker('SOL/USD'))}",
        ],
        "--strict",
        "--json",
    )
    assert produced.returncode == 1
    assert json.loads(produced.stdout) == {
        "produced": 1,
        "rejected": 1,
        "failed": 0,
        "errors": [{"line": 2, "error": "rawticker.last: Expected `float` > 0.0"}],
    }


def test_a_custom_separator_and_unknown_topics(broker: EmbeddedBroker) -> None:
    unknown = produce(broker, "rawquote", ["x"])
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "cryptoviz: unknown topic rawquote; known topics: rawarticle, rawticker, rawtrade, "
        "rawalert (--raw sends to any existing topic, unvalidated)"
    )
    raw_unknown = produce(broker, "rawquote", ["x"], "--raw")
    assert raw_unknown.returncode == 1
    assert raw_unknown.stderr.startswith("cryptoviz: unknown topic rawquote; topics on the broker:")
    consumed = run("cryptoviz", "consume", "rawquote", "--max", "1", **on(broker))
    assert consumed.returncode == 1
    assert consumed.stderr.startswith("cryptoviz: unknown topic rawquote;")
    assert "Traceback" not in consumed.stderr

    separated = produce(broker, "rawtrade", [f"BTC/USD|{json.dumps(trade())}"], "--separator", "|")
    assert separated.returncode == 0, separated.stderr
    assert separated.stdout.strip() == "1 produced, 0 rejected"


def trade(pair: str = "BTC/USD", trade_id: int = 1) -> dict[str, Any]:
    return {
        "pair": pair,
        "price": 99950.5,
        "volume": 0.5,
        "timestamp": 1705312345.678,
        "side": "b",
        "trade_id": trade_id,
    }


@pytest.mark.slow
@pytest.mark.parametrize("group", [[], ["--group", "new-group"]], ids=["no group", "new group"])
def test_consume_without_from_beginning_starts_at_the_log_end(
    private_broker: EmbeddedBroker, group: list[str]
) -> None:
    # One produce call: the records share batches, and the embedded broker's ListOffsets
    # "latest" would land inside the last one (see services.ops.offsets).
    lines = [f"BTC/USD::{json.dumps(trade(trade_id=n))}" for n in range(20)]
    assert produce(private_broker, "rawtrade", lines).returncode == 0
    result = run(
        "cryptoviz", "consume", "rawtrade", *group, "--timeout", "1.5", **on(private_broker)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == "Processed a total of 0 messages"


@pytest.mark.slow
def test_consume_follows_new_records_and_stops_cleanly_on_sigint(
    private_broker: EmbeddedBroker,
) -> None:
    old = [f"ETH/USD::{json.dumps(trade('ETH/USD', n))}" for n in range(3)]
    assert produce(private_broker, "rawtrade", old).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    process = subprocess.Popen(
        [str(BIN / "cryptoviz"), "consume", "rawtrade", "--print-key", "--compact"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**clean, **on(private_broker)},
    )
    try:
        assert process.stdout is not None
        printed = ""
        # The consumer starts at the log end once it is up; produce until it shows something.
        deadline = time.monotonic() + 30
        number = 100
        while not printed and time.monotonic() < deadline:
            number += 1
            new = f"SOL/USD::{json.dumps(trade('SOL/USD', number))}"
            assert produce(private_broker, "rawtrade", [new]).returncode == 0
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                printed = process.stdout.readline()
        assert printed.startswith("SOL/USD :: {")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "ETH/USD" not in printed + out
    assert err.strip().startswith("Processed a total of ")
    assert "Traceback" not in err


@pytest.mark.slow
def test_consume_with_a_group_commits_what_it_printed(private_broker: EmbeddedBroker) -> None:
    lines = [f"BTC/USD::{json.dumps(ticker(last=100.0 + n))}" for n in range(3)]
    assert produce(private_broker, "rawticker", lines).returncode == 0
    env = on(private_broker)
    first = records(
        run(
            "cryptoviz",
            "consume",
            "rawticker",
            "--group",
            "console-test",
            "--from-beginning",
            "--json",
            "--max",
            "2",
            **env,
        )
    )
    assert [r["offset"] for r in first] == [0, 1]
    described = json.loads(
        run("cryptoviz", "groups", "describe", "console-test", "--json", **env).stdout
    )
    # The console left the group on exit (the embedded broker's first generation too).
    assert described["state"] == "Empty"
    assert [(p["committed"], p["end"], p["lag"]) for p in described["partitions"]] == [(2, 3, 1)]
    rest = records(
        run(
            "cryptoviz",
            "consume",
            "rawticker",
            "--group",
            "console-test",
            "--json",
            "--max",
            "1",
            "--timeout",
            "10",
            **env,
        )
    )
    assert [r["offset"] for r in rest] == [2]
