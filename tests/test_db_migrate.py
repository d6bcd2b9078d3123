"""Schema migrations against a real PostgreSQL: a fresh database per test, dropped after.

The server has no TimescaleDB (none can be installed here): these tests cover the plain-PostgreSQL
path, where views stand in for the continuous aggregates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.db.migrate import MigrationError, load_migrations, migrate, schema_status
from tests.conftest import free_port
from tests.test_ops_groups import arun

TABLES = (
    "ticker_data",
    "trade_data",
    "article_data",
    "alert_data",
    "sentiment_data",
    "prediction_data",
    "dead_letters",
    "scraper_seen",
    "schema_migrations",
)
VIEWS = ("candles_1m", "candles_1h", "sentiment_1h")
LATEST = len(load_migrations())


@pytest.fixture
def dsn(empty_database: str) -> str:
    return empty_database


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def schema_snapshot(connection: Any) -> list[tuple[Any, ...]]:
    rows = await connection.fetch(
        "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = 'public' ORDER BY 1, 3"
    )
    return [tuple(row) for row in rows]


async def test_migrate_creates_every_table_and_view(db: Any) -> None:
    before = await schema_status(db)
    assert (before.current, before.latest) == (0, LATEST)
    assert [m.filename for m in before.pending] == ["0001_core.sql", "0002_aggregates.sql"]

    result = await migrate(db)

    assert [m.version for m in result.applied] == [1, 2]
    assert result.status.up_to_date
    assert result.status.current == LATEST
    assert not result.status.timescaledb_installed
    kinds = dict(
        await db.fetch(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )
    )
    assert {name: kinds.get(name) for name in TABLES} == dict.fromkeys(TABLES, b"r")
    assert {name: kinds.get(name) for name in VIEWS} == dict.fromkeys(VIEWS, b"v")
    rows = await db.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    assert [(r["version"], r["name"]) for r in rows] == [(1, "core"), (2, "aggregates")]
    assert [r["checksum"] for r in rows] == [m.checksum for m in load_migrations()]


async def test_running_twice_changes_nothing(db: Any) -> None:
    await migrate(db)
    schema = await schema_snapshot(db)
    recorded = await db.fetch("SELECT * FROM schema_migrations ORDER BY version")

    again = await migrate(db)

    assert again.applied == []
    assert again.status.up_to_date
    assert await schema_snapshot(db) == schema
    assert await db.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded


async def test_concurrent_runs_apply_each_migration_once(dsn: str) -> None:
    connections = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        applied = sorted(m.version for result in results for m in result.applied)
        assert applied == list(range(1, LATEST + 1))
        assert all(result.status.up_to_date for result in results)
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == LATEST
    finally:
        for connection in connections:
            await connection.close()


async def test_a_changed_migration_is_refused_naming_its_file(db: Any) -> None:
    await migrate(db)
    shipped = load_migrations()
    edited = (replace(shipped[0], sql=shipped[0].sql + "\n-- edited", checksum="0" * 64),)
    edited += shipped[1:]

    with pytest.raises(MigrationError, match=r"0001_core\.sql changed after being applied"):
        await migrate(db, migrations=edited)
    assert (await schema_status(db, edited)).changed == ["0001_core.sql"]

    # The same, seen from the other side: a record tampered with in the database.
    await db.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 2")
    with pytest.raises(MigrationError, match=r"0002_aggregates\.sql"):
        await migrate(db)


async def test_a_database_newer_than_the_build_is_refused(db: Any) -> None:
    await migrate(db)
    await db.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')"
    )
    with pytest.raises(MigrationError, match="schema version 99, newer than this build's"):
        await migrate(db)


async def test_a_failing_migration_leaves_the_previous_version(db: Any) -> None:
    shipped = load_migrations()
    broken = replace(shipped[1], sql="CREATE VIEW candles_1m AS SELECT nonsense FROM nowhere;")
    with pytest.raises(MigrationError, match=r"0002_aggregates\.sql failed: .*nowhere"):
        await migrate(db, migrations=(shipped[0], broken))
    status = await schema_status(db)
    assert status.current == 1
    assert [m.version for m in status.pending] == [2]
    assert await db.fetchval("SELECT to_regclass('candles_1m')") is None


async def test_candle_views_compute_ohlcv(db: Any) -> None:
    await migrate(db)
    base = 1_700_000_040.0  # 22:14:00 UTC: minutes 22:14 and 22:15, both in hour 22:00
    trades = [
        # pair, ts, trade_id, price, volume, side
        ("BTC/USD", base + 1, 1, 100.0, 0.5, "b"),
        ("BTC/USD", base + 30, 2, 104.0, 0.25, "s"),
        ("BTC/USD", base + 10, 3, 98.0, 1.0, "s"),
        ("BTC/USD", base + 59, 4, 101.0, 0.25, "b"),
        ("BTC/USD", base + 61, None, 103.0, 2.0, "b"),
        ("BTC/USD", base + 90, None, 102.5, 0.5, "s"),
        ("ETH/USD", base + 5, 7, 2000.0, 3.0, "b"),
    ]
    await db.executemany(
        "INSERT INTO trade_data (pair, ts, trade_id, price, volume, side) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [(p, at(ts), tid, price, vol, side) for p, ts, tid, price, vol, side in trades],
    )

    minutes = await db.fetch(
        "SELECT bucket, pair, open, high, low, close, volume, trades FROM candles_1m "
        "ORDER BY pair, bucket"
    )
    assert [tuple(r) for r in minutes] == [
        (at(base), "BTC/USD", 100.0, 104.0, 98.0, 101.0, 2.0, 4),
        (at(base + 60), "BTC/USD", 103.0, 103.0, 102.5, 102.5, 2.5, 2),
        (at(base), "ETH/USD", 2000.0, 2000.0, 2000.0, 2000.0, 3.0, 1),
    ]
    hours = await db.fetch(
        "SELECT bucket, open, high, low, close, volume, trades FROM candles_1h "
        "WHERE pair = 'BTC/USD'"
    )
    assert [tuple(r) for r in hours] == [
        (datetime(2023, 11, 14, 22, tzinfo=UTC), 100.0, 104.0, 98.0, 102.5, 4.5, 6)
    ]

    # Buckets are UTC whatever the session's zone (India is 5:30 off UTC).
    await db.execute("SET TIME ZONE 'Asia/Kolkata'")
    bucket = await db.fetchval("SELECT bucket FROM candles_1h WHERE pair = 'ETH/USD'")
    assert bucket == datetime(2023, 11, 14, 22, tzinfo=UTC)


async def test_sentiment_view_aggregates_per_hour_and_symbol(db: Any) -> None:
    await migrate(db)
    hour = 1_699_999_200.0  # 22:00 UTC
    rows = [
        ("BTC", hour + 60, "a1", 0.5, "positive"),
        ("BTC", hour + 120, "a2", -0.25, "negative"),
        ("BTC", hour + 180, "a3", 0.0, "neutral"),
        ("BTC", hour + 3600, "a4", 1.0, "positive"),
        ("ETH", hour + 60, "a1", 0.5, "positive"),
    ]
    await db.executemany(
        "INSERT INTO sentiment_data (symbol, ts, article_id, score, label) "
        "VALUES ($1, $2, $3, $4, $5)",
        [(s, at(ts), a, score, label) for s, ts, a, score, label in rows],
    )
    got = await db.fetch(
        "SELECT symbol, bucket, articles, avg_score, positive, negative, neutral "
        "FROM sentiment_1h ORDER BY symbol, bucket"
    )
    assert [tuple(r) for r in got] == [
        ("BTC", at(hour), 3, 0.25 / 3, 1, 1, 1),
        ("BTC", at(hour + 3600), 1, 1.0, 1, 0, 0),
        ("ETH", at(hour), 1, 0.5, 1, 0, 0),
    ]


UPSERTS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "ticker_data": (
        "INSERT INTO ticker_data (pair, ts, last, bid, ask, volume_24h, pct_change) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pair, ts) DO NOTHING",
        [
            ("BTC/USD", at(1_700_000_000), 100.0, 99.5, 100.5, 1234.5, -1.25),
            ("BTC/USD", at(1_700_000_001), 100.5, 100.0, 101.0, 1234.75, -1.0),
        ],
    ),
    "trade_data": (
        "INSERT INTO trade_data (pair, ts, trade_id, price, volume, side) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pair, ts, trade_key) DO NOTHING",
        [
            ("BTC/USD", at(1_700_000_000.25), 42, 100.0, 0.5, "b"),
            # The seed's trades have no id: the same fields are the same trade...
            ("BTC/USD", at(1_700_000_000.25), None, 100.0, 0.5, "b"),
            ("BTC/USD", at(1_700_000_000.25), None, 100.0, 0.5, "b"),
            # ... and any field that differs makes another one.
            ("BTC/USD", at(1_700_000_000.25), None, 100.0, 0.75, "b"),
            ("BTC/USD", at(1_700_000_000.25), None, 100.0, 0.5, "s"),
        ],
    ),
    "article_data": (
        "INSERT INTO article_data (id, url, website, title, summary, content_text, "
        "published_at, scraped_at, tags, sentiment_score, sentiment_label, "
        "cryptocurrencies_mentioned) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
        "ON CONFLICT (id) DO NOTHING",
        [
            (
                "a1",
                "https://news.example/a1",
                "news.example",
                "Bitcoin up",
                "Up.",
                "Bitcoin went up.",
                None,
                at(1_700_000_000),
                ["markets"],
                0.5,
                "positive",
                ["BTC"],
            )
        ],
    ),
    "alert_data": (
        "INSERT INTO alert_data (pair, type, ts, last, change, threshold, window_s) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pair, type, ts) DO NOTHING",
        [("BTC/USD", "price_spike", at(1_700_000_000), 105.0, 5.0, 3.0, 60.0)],
    ),
    "sentiment_data": (
        "INSERT INTO sentiment_data (symbol, ts, article_id, score, label) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (symbol, ts, article_id) DO NOTHING",
        [("BTC", at(1_700_000_000), "a1", 0.5, "positive")],
    ),
    "prediction_data": (
        "INSERT INTO prediction_data (symbol, ts, horizon_s, model, predicted_price) "
        "VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (symbol, ts, horizon_s, model) DO NOTHING",
        [("BTC", at(1_700_000_000), 3600, "naive", 101.0)],
    ),
    "dead_letters": (
        "INSERT INTO dead_letters (topic, partition, kafka_offset, key, value, kind, reason) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (topic, partition, kafka_offset) DO NOTHING",
        [("rawtrade", 0, 17, b"BTC/USD", b"{not json", "malformed_json", "malformed JSON")],
    ),
}


async def test_a_redelivery_changes_nothing(db: Any) -> None:
    await migrate(db)
    expected = {"trade_data": 4}  # the id-less duplicate above is the only collapsed one
    for table, (sql, rows) in UPSERTS.items():
        await db.executemany(sql, rows)
        first = await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        assert len(first) == expected.get(table, len(rows)), table
        async with db.transaction():
            await db.executemany(sql, rows)
        assert await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3") == first, table
    keys = await db.fetch("SELECT trade_key FROM trade_data ORDER BY trade_key")
    assert keys[-1]["trade_key"] == "id:42"
    assert all(row["trade_key"].startswith("h:") for row in keys[:-1])


async def test_roles_grant_least_privilege(db: Any) -> None:
    result = await migrate(db, roles=True)
    assert result.roles_applied
    await migrate(db, roles=True)  # created only if missing: a second run is no error

    async def can(role: str, table: str, privilege: str) -> bool:
        return bool(
            await db.fetchval("SELECT has_table_privilege($1, $2, $3)", role, table, privilege)
        )

    for table in ("ticker_data", "trade_data", "article_data", "dead_letters"):
        assert await can("cryptoviz_writer", table, "INSERT")
        assert await can("cryptoviz_writer", table, "SELECT")
        assert not await can("cryptoviz_writer", table, "UPDATE")
        assert not await can("cryptoviz_writer", table, "DELETE")
        assert await can("cryptoviz_reader", table, "SELECT")
        assert not await can("cryptoviz_reader", table, "INSERT")
    assert await can("cryptoviz_reader", "candles_1m", "SELECT")
    login = await db.fetchval(
        "SELECT bool_or(rolcanlogin) FROM pg_roles "
        "WHERE rolname IN ('cryptoviz_writer', 'cryptoviz_reader')"
    )
    assert login is False


async def test_the_db_commands_as_processes(dsn: str) -> None:
    env = {"CRYPTOVIZ_DB_DSN": dsn}
    code, out, err = await arun("cryptoviz", "db", "status", "--json", **env)
    assert code == 0, err
    status = json.loads(out)
    assert (status["current"], status["latest"]) == (0, LATEST)
    assert status["pending"] == ["0001_core.sql", "0002_aggregates.sql"]
    assert status["timescaledb"] == {"available": False, "installed": False}

    code, out, err = await arun("cryptoviz", "db", "migrate", "--dry-run", **env)
    assert code == 0, err
    assert out.splitlines() == [
        "would apply 0001_core.sql",
        "would apply 0002_aggregates.sql",
        f"dry run: schema version 0, would migrate to {LATEST}; nothing applied",
    ]

    code, out, err = await arun("cryptoviz", "db", "migrate", **env)
    assert code == 0, err
    assert out.splitlines() == [
        "applied 0001_core.sql",
        "applied 0002_aggregates.sql",
        f"schema version {LATEST} (latest)",
    ]
    code, out, err = await arun("cryptoviz", "db", "migrate", "--json", **env)
    assert code == 0, err
    assert json.loads(out)["applied"] == []

    code, out, err = await arun("cryptoviz", "db", "status", **env)
    assert code == 0, err
    assert f"schema version: {LATEST} (latest {LATEST})" in out
    assert "pending: none" in out
    assert "timescaledb: not available" in out


async def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    dsn = f"postgresql://cryptoviz:s3cret-pw@127.0.0.1:{free_port()}/cryptoviz"
    for argv in (("db", "migrate"), ("db", "status")):
        code, out, err = await arun("cryptoviz", *argv, CRYPTOVIZ_DB_DSN=dsn)
        assert code == 1
        assert out == ""
        assert len(err.splitlines()) == 1
        assert err.startswith("cryptoviz: cannot connect to postgresql://cryptoviz:***@127.0.0.1:")
        assert "s3cret-pw" not in err


async def test_health_fails_while_migrations_are_pending(dsn: str) -> None:
    env = {"CRYPTOVIZ_DB_DSN": dsn}
    skip = ("--skip", "broker,topics,daemons")
    code, out, _ = await arun("cryptoviz", "health", *skip, **env)
    assert code == 1
    assert out.startswith(
        f"FAIL database: {dsn} reachable, schema version 0 (latest {LATEST}): "
        f"{LATEST} migrations pending (`cryptoviz db migrate` applies them)"
    )

    code, _, err = await arun("cryptoviz", "db", "migrate", **env)
    assert code == 0, err
    code, out, _ = await arun("cryptoviz", "health", *skip, "--json", **env)
    assert code == 0
    [result] = json.loads(out)
    assert result["ok"] is True
    assert result["reason"].startswith(
        f"{dsn} reachable, schema version {LATEST} (latest {LATEST}), PostgreSQL "
    )
    assert result["details"]["pending"] == []
