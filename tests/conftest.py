"""Session fixtures: a real Kafka-protocol broker and a real PostgreSQL, both embedded.

The broker is Tansu, not Apache Kafka: tests that touch one of its documented differences
(README, "The embedded broker") say so where they do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from shared.db.migrate import migrate_dsn
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import SUPERUSER, EmbeddedPostgres
from shared.embedded.process import free_port
from shared.settings import Settings, load_settings

# Tests never reach beyond loopback; model hubs must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # World-traversable, unlike pytest's tmp dirs: PostgreSQL runs as its own user under root.
    path = Path(tempfile.mkdtemp(prefix="cryptoviz-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_broker(workdir: Path) -> EmbeddedBroker:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=workdir / f"broker-{port}.log")
    broker.start()
    return broker


@pytest.fixture(scope="session")
def broker(workdir: Path) -> Iterator[EmbeddedBroker]:
    """One broker for the session. Tests that restart a broker take ``private_broker``."""
    server = start_broker(workdir)
    yield server
    server.stop()


@pytest.fixture
def private_broker(workdir: Path) -> Iterator[EmbeddedBroker]:
    server = start_broker(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(workdir / "postgres", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def empty_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """The DSN of a new, empty database owned by the fixture's (non-superuser) role."""
    name = f"test_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(
        f"postgresql://{SUPERUSER}@{postgres.host}:{postgres.port}/postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{postgres.role}"')
        yield f"postgresql://{postgres.role}@{postgres.host}:{postgres.port}/{name}"
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_database(empty_database: str) -> str:
    """A new database at the latest schema version."""
    await migrate_dsn(empty_database)
    return empty_database


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Callable[..., Settings]:
    """Settings as a daemon would load them, from a clean CRYPTOVIZ_* environment plus ``env``."""

    def make(broker: EmbeddedBroker | None = None, **env: str) -> Settings:
        for name in list(os.environ):
            if name.startswith("CRYPTOVIZ_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("CRYPTOVIZ_DATA_DIR", str(workdir / "data"))
        if broker is not None:
            monkeypatch.setenv("CRYPTOVIZ_KAFKA_BOOTSTRAP", broker.bootstrap)
            # The embedded broker cannot initialise an idempotent producer (InitProducerId).
            monkeypatch.setenv("CRYPTOVIZ_KAFKA_IDEMPOTENCE", "false")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_settings(Settings)

    return make


@pytest.fixture
def kafka_settings(make_settings: Callable[..., Settings], broker: EmbeddedBroker) -> Settings:
    return make_settings(broker)
