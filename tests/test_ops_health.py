"""``cryptoviz health`` against a real broker, a real PostgreSQL and small /readyz servers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import EmbeddedPostgres
from tests.conftest import free_port
from tests.test_cli import on, run
from tests.test_ops_groups import arun


@pytest.fixture
async def daemons() -> AsyncIterator[str]:
    """Two daemons' HTTP servers: ``ready`` answers 200, ``stuck`` 503 like shared.runtime."""

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True, "checks": {"kafka": True}})

    async def stuck(_: web.Request) -> web.Response:
        return web.json_response(
            {"ready": False, "checks": {"kafka": False, "websocket": True}}, status=503
        )

    runners = []
    urls = []
    for name, handler in (("ready", ready), ("stuck", stuck)):
        app = web.Application()
        app.router.add_get("/readyz", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(f"{name}=http://127.0.0.1:{runner.addresses[0][1]}")
    yield ",".join(urls)
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def ensured(private_broker: EmbeddedBroker) -> EmbeddedBroker:
    code, _, err = await arun("cryptoviz", "topics", "ensure", **on(private_broker))
    assert code == 0, err
    return private_broker


async def test_everything_up_is_all_ok(
    ensured: EmbeddedBroker, postgres: EmbeddedPostgres, daemons: str
) -> None:
    ready_only = daemons.split(",", maxsplit=1)[0]
    env = {
        **on(ensured),
        "CRYPTOVIZ_DB_DSN": postgres.dsn,
        "CRYPTOVIZ_HEALTH_DAEMONS": ready_only,
    }
    # Migrating the shared database is harmless: every statement is "if not exists".
    migrated, out, err = await arun("cryptoviz", "db", "migrate", CRYPTOVIZ_DB_DSN=postgres.dsn)
    assert migrated == 0, out + err
    code, out, err = await arun("cryptoviz", "health", **env)
    assert code == 0, out + err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "OK   broker",
        "OK   topics",
        "OK   database",
        "OK   daemon ready",
    ]
    assert "reachable, 1 broker; Produce v" in lines[0]
    assert "IncrementalAlterConfigs v" in lines[0]
    assert lines[1] == (
        "OK   topics: rawarticle, rawticker, rawtrade, rawalert present with the wanted configs"
    )
    assert re.search(r"reachable, schema version (\d+) \(latest \1\)", lines[2]), lines[2]
    assert lines[3].endswith("/readyz ready")

    code, out, err = await arun("cryptoviz", "health", "--json", **env)
    assert code == 0, err
    checks = {c["check"]: c for c in json.loads(out)}
    assert all(c["ok"] for c in checks.values())
    apis = next(iter(checks["broker"]["details"]["brokers"].values()))
    assert apis["Fetch"]["max"] >= 4


async def test_one_line_per_failed_check(
    ensured: EmbeddedBroker, postgres: EmbeddedPostgres, daemons: str
) -> None:
    env = {**on(ensured), "CRYPTOVIZ_DB_DSN": postgres.dsn, "CRYPTOVIZ_HEALTH_DAEMONS": daemons}
    code, out, _ = await arun("cryptoviz", "health", "--skip", "broker,topics,database", **env)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("OK   daemon ready: ")
    assert lines[1].startswith("FAIL daemon stuck: http://127.0.0.1:")
    assert lines[1].endswith("/readyz answered 503 (not ready: kafka)")


def test_an_unreachable_database_fails_without_printing_its_password(
    broker: EmbeddedBroker,
) -> None:
    dsn = f"postgresql://cryptoviz:s3cret-pw@127.0.0.1:{free_port()}/cryptoviz"
    result = run(
        "cryptoviz", "health", "--skip", "daemons,topics", CRYPTOVIZ_DB_DSN=dsn, **on(broker)
    )
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1
    assert failed[0].startswith(
        "FAIL database: cannot connect to postgresql://cryptoviz:***@127.0.0.1:"
    )
    assert result.stdout.startswith("OK   broker: ")
    assert "Traceback" not in result.stderr


def test_an_unreachable_broker_fails_broker_and_topics_quickly() -> None:
    result = run(
        "cryptoviz",
        "health",
        "--skip",
        "daemons,database",
        "--timeout",
        "2",
        CRYPTOVIZ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        timeout=20,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["FAIL broker", "FAIL topics"]
    assert lines[0].startswith("FAIL broker: cannot reach Kafka at 127.0.0.1:")
    assert "Traceback" not in result.stderr


def test_bad_options_and_settings_are_one_line() -> None:
    skipped = run("cryptoviz", "health", "--skip", "brokers")
    assert skipped.returncode == 1
    assert skipped.stderr == (
        "cryptoviz: --skip: unknown check brokers; checks: broker, topics, database, daemons\n"
    )
    bad = run("cryptoviz", "health", CRYPTOVIZ_HEALTH_DAEMONS="kraken:9101")
    assert bad.returncode == 78
    assert bad.stderr.startswith(
        "cryptoviz: invalid setting CRYPTOVIZ_HEALTH_DAEMONS: 'kraken:9101' is not name=url"
    )


def test_missing_topics_fail_the_topics_check(private_broker: EmbeddedBroker) -> None:
    result = run("cryptoviz", "health", "--skip", "daemons,database", **on(private_broker))
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == (
        "FAIL topics: rawarticle missing; rawticker missing; rawtrade missing; rawalert missing "
        "(`cryptoviz topics ensure` fixes these)"
    )


async def test_db_migrate_waits_for_an_unreachable_database_then_says_why() -> None:
    started = time.monotonic()
    dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    code, _, err = await arun("cryptoviz", "db", "migrate", "--wait", "2", CRYPTOVIZ_DB_DSN=dsn)
    assert code == 1
    assert "cannot connect to postgresql://nobody@127.0.0.1" in err
    assert time.monotonic() - started >= 2
