"""The embedded infrastructure: a real PostgreSQL and a real broker, and their daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from shared.embedded.postgres import EmbeddedPostgres
from shared.embedded.process import port_open
from tests.conftest import free_port

BIN = Path(sys.executable).parent


async def test_the_postgres_fixture_is_a_real_server(postgres: EmbeddedPostgres) -> None:
    connection = await asyncpg.connect(postgres.dsn)
    try:
        assert await connection.fetchval("SELECT current_user") == "cryptoviz"
        assert await connection.fetchval("SELECT current_database()") == "cryptoviz"
        assert (await connection.fetchval("SHOW server_version")).split(".")[0] >= "16"
    finally:
        await connection.close()


def readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def wait_ready(
    port: int, process: subprocess.Popen[str], timeout_s: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        status, body = readyz(port)
        if status == 200:
            return body
        time.sleep(0.1)
    raise AssertionError(f"not ready within {timeout_s} s")


def daemon(workdir: Path, *argv: str, http_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env.update(
        CRYPTOVIZ_HTTP_PORT=str(http_port),
        CRYPTOVIZ_DATA_DIR=str(workdir / f"daemon-{http_port}"),
        CRYPTOVIZ_LOG_FORMAT="json",
    )
    return subprocess.Popen(
        [str(BIN / "cryptoviz"), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, object]]]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line]


@pytest.mark.slow
def test_broker_daemon_serves_kafka_and_stops_its_child_on_sigterm(workdir: Path) -> None:
    kafka_port, http_port = free_port(), free_port()
    process = daemon(workdir, "broker", "--port", str(kafka_port), http_port=http_port)
    try:
        body = wait_ready(http_port, process)
        assert body["checks"] == {"started": True, "not_stopping": True, "broker": True}
        assert port_open("127.0.0.1", kafka_port)
    finally:
        code, logs = stop(process)
    assert code == 0
    assert not port_open("127.0.0.1", kafka_port)  # no orphaned broker
    assert logs[-1]["event"] == "daemon stopped"


@pytest.mark.slow
def test_postgres_daemon_keeps_its_data_across_restarts(workdir: Path) -> None:
    pg_port, http_port = free_port(), free_port()
    dsn = f"postgresql://cryptoviz@127.0.0.1:{pg_port}/cryptoviz"

    def psql(sql: str) -> str:
        import asyncio  # noqa: PLC0415

        async def query() -> str:
            connection = await asyncpg.connect(dsn)
            try:
                return str(await connection.fetchval(sql))
            finally:
                await connection.close()

        return asyncio.run(query())

    first = daemon(workdir, "postgres", "--port", str(pg_port), http_port=http_port)
    try:
        wait_ready(http_port, first)
        psql("CREATE TABLE kept (v text)")
        psql("INSERT INTO kept VALUES ('still here')")
    finally:
        code, _ = stop(first)
    assert code == 0
    assert not port_open("127.0.0.1", pg_port)

    second = daemon(workdir, "postgres", "--port", str(pg_port), http_port=http_port)
    try:
        wait_ready(http_port, second)
        assert psql("SELECT v FROM kept") == "still here"
    finally:
        assert stop(second)[0] == 0


@pytest.mark.slow
def test_a_broker_daemon_whose_port_is_taken_keeps_retrying_and_is_not_ready(
    workdir: Path, broker: object
) -> None:
    from shared.embedded.broker import EmbeddedBroker  # noqa: PLC0415

    assert isinstance(broker, EmbeddedBroker)
    http_port = free_port()
    process = daemon(workdir, "broker", "--port", str(broker.port), http_port=http_port)
    try:
        deadline = time.monotonic() + 20
        status, body = 0, {}
        while time.monotonic() < deadline and status == 0:
            status, body = readyz(http_port)
            time.sleep(0.1)
        assert status == 503
        assert body["checks"] == {"started": False, "not_stopping": True}
    finally:
        code, logs = stop(process)
    assert code == 0
    failures = [line for line in logs if line["event"] == "start failed, retrying"]
    assert failures
    assert "already in use" in str(failures[0]["error"])


def test_embedded_postgres_restarts_straight_after_a_stop(workdir: Path) -> None:
    # The port opens before a restarting server takes connections ("the database system is
    # starting up"); start() returns only once it does, so its own set-up and its callers succeed.
    server = EmbeddedPostgres(workdir / f"pg-restart-{free_port()}", port=free_port())
    try:
        for _ in range(5):
            server.start()
            ready = subprocess.run(
                [str(server.bin_dir / "pg_isready"), "-h", server.host, "-p", str(server.port)],
                check=False,
            )
            assert ready.returncode == 0
            server.stop()
    finally:
        server.stop()
