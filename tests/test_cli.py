"""The console scripts, run as an operator runs them: as processes, against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.embedded.broker import EmbeddedBroker
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*argv: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**clean, **env},
        check=False,
    )


def on(broker: EmbeddedBroker) -> dict[str, str]:
    return {"CRYPTOVIZ_KAFKA_BOOTSTRAP": broker.bootstrap, "CRYPTOVIZ_KAFKA_IDEMPOTENCE": "false"}


@pytest.mark.parametrize(
    "script", ["cryptoviz", "cryptoviz-kraken", "cryptoviz-scraper", "cryptoviz-spark"]
)
def test_every_console_script_has_help_and_version(script: str) -> None:
    helped = run(script, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(f"usage: {script}")
    versioned = run(script, "--version")
    assert versioned.returncode == 0
    assert versioned.stdout.strip() == f"{script} 0.1.0"


def test_daemon_help_lists_the_settings_it_reads() -> None:
    helped = run("cryptoviz-kraken", "--help").stdout
    assert "CRYPTOVIZ_KAFKA_BOOTSTRAP" in helped
    assert "CRYPTOVIZ_KRAKEN_PAIRS" in helped


def test_the_spark_wrapper_needs_a_job_and_names_the_ones_it_runs() -> None:
    missing = run("cryptoviz-spark")
    assert missing.returncode == 2
    assert "ingestion" in missing.stderr


def test_the_analytics_job_is_known_but_not_built_yet() -> None:
    result = run("cryptoviz-spark", "analytics")
    assert result.returncode == 69  # EX_UNAVAILABLE: no supervisor takes it for running
    assert "not implemented yet" in result.stderr


@pytest.mark.slow
def test_topics_ensure_then_describe_and_list(private_broker: EmbeddedBroker) -> None:
    env = on(private_broker)
    first = run("cryptoviz", "topics", "ensure", "--json", **env)
    assert first.returncode == 0, first.stderr
    assert [(c["topic"], c["action"]) for c in json.loads(first.stdout)] == [
        ("rawarticle", "created"),
        ("rawticker", "created"),
        ("rawtrade", "created"),
        ("rawalert", "created"),
    ]
    second = run("cryptoviz", "topics", "ensure", **env)
    assert second.returncode == 0
    assert second.stdout.count("unchanged") == 4

    described = json.loads(
        run("cryptoviz", "topics", "describe", "rawticker", "--json", **env).stdout
    )
    assert described["exists"] is True
    assert described["key"] == "pair"
    configs = {c["config"]: c for c in described["configs"]}
    assert configs["segment.ms"] == {
        "config": "segment.ms",
        "wanted": "3600000",
        "actual": "3600000",
        "ok": True,
    }
    table = run("cryptoviz", "topics", "describe", **env).stdout
    assert "Topic: rawarticle  key: website" in table
    assert " NO" not in table

    listed = json.loads(run("cryptoviz", "topics", "list", "--json", **env).stdout)
    assert {(t["topic"], t["status"]) for t in listed} == {
        ("rawarticle", "managed"),
        ("rawticker", "managed"),
        ("rawtrade", "managed"),
        ("rawalert", "managed"),
    }


def test_describe_shows_a_topic_that_is_missing(private_broker: EmbeddedBroker) -> None:
    result = run("cryptoviz", "topics", "describe", "rawalert", **on(private_broker))
    assert result.returncode == 0
    assert "(missing: run `cryptoviz topics ensure`)" in result.stdout


def test_an_unknown_topic_is_one_clear_line(broker: EmbeddedBroker) -> None:
    result = run("cryptoviz", "topics", "describe", "rawquote", **on(broker))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "cryptoviz: unknown topic rawquote; known topics: rawarticle, rawticker, rawtrade, rawalert"
    )


def test_an_unreachable_broker_is_one_clear_line() -> None:
    result = run(
        "cryptoviz", "topics", "ensure", CRYPTOVIZ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("cryptoviz: cannot list topics:")
    assert "Traceback" not in result.stderr


def test_a_bad_setting_exits_78_naming_it() -> None:
    result = run("cryptoviz", "topics", "list", CRYPTOVIZ_KAFKA_BOOTSTRAP="no-port")
    assert result.returncode == 78
    assert "invalid setting CRYPTOVIZ_KAFKA_BOOTSTRAP: 'no-port' is not host:port" in result.stderr
    assert "Traceback" not in result.stderr


def test_ensure_waits_for_a_broker_that_comes_up(workdir: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=workdir / f"late-{port}.log")
    env = {**on(broker)}
    process = subprocess.Popen(
        [str(BIN / "cryptoviz"), "topics", "ensure", "--wait", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}, **env},
    )
    try:
        broker.start()
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        broker.stop()
    assert process.returncode == 0, err
    assert out.count("created") == 4
