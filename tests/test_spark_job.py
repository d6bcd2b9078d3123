"""``cryptoviz-spark ingestion`` end to end: the real wrapper daemon runs the real job under real
Spark (local[2]) against the embedded broker and a real PostgreSQL.

Each test starts Spark (about 10 s each time), so they are few and each checks a whole story.
The embedded broker is Tansu: topics here are created with one partition (it would auto-create
four) and its ListOffsets "latest" falls short of the log end, which is why end offsets below are
read from fetches (``services.ops.offsets``), as the job's source reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.ops.offsets import OffsetReader
from services.spark.group_offsets import committed_offsets
from shared.db.migrate import migrate_dsn
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import EmbeddedPostgres
from shared.envelope import PAYLOADS, Payload
from shared.settings import Settings
from tests.conftest import free_port
from tests.daemon_http import DaemonHttp
from tests.spark_records import Raw, alert, article, ticker, trade

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
GROUP = "spark-job-ingestion"
TOPICS = tuple(PAYLOADS)


@dataclass
class SparkDaemon(DaemonHttp):
    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path

    def job_pid(self) -> int | None:
        """The spark-submit child: its own process group leader, parent the wrapper."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == self.process.pid:
                return int(entry.name)
        return None

    def stop(self, timeout_s: float = 40.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture
def kafka(private_broker: EmbeddedBroker) -> EmbeddedBroker:
    admin = AdminClient({"bootstrap.servers": private_broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in TOPICS]).values():
        future.result(10)
    return private_broker


@pytest.fixture
def spawn(
    kafka: EmbeddedBroker, migrated_database: str, workdir: Path
) -> Iterator[Callable[..., SparkDaemon]]:
    data_dir = workdir / f"spark-{free_port()}"
    running: list[SparkDaemon] = []

    def start(**env: str) -> SparkDaemon:
        http_port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
        log_path = data_dir / f"wrapper-{len(running)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / "cryptoviz-spark"), "ingestion"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **clean,
                    "CRYPTOVIZ_KAFKA_BOOTSTRAP": kafka.bootstrap,
                    "CRYPTOVIZ_KAFKA_IDEMPOTENCE": "false",
                    "CRYPTOVIZ_DB_DSN": migrated_database,
                    "CRYPTOVIZ_HTTP_PORT": str(http_port),
                    "CRYPTOVIZ_DATA_DIR": str(data_dir),
                    "CRYPTOVIZ_LOG_FORMAT": "json",
                    "CRYPTOVIZ_SPARK_MASTER": "local[2]",
                    "CRYPTOVIZ_SPARK_STARTING_OFFSETS": "earliest",
                    "CRYPTOVIZ_SPARK_TRIGGER_S": "0.5",
                    "CRYPTOVIZ_SPARK_CONF": "spark.ui.enabled=false",
                    "CRYPTOVIZ_SPARK_RESTART_BACKOFF_MAX_S": "2",
                    "CRYPTOVIZ_SPARK_LAG_INTERVAL_S": "1",
                    "CRYPTOVIZ_STOP_TIMEOUT_S": "30",
                    **env,
                },
            )
        daemon = SparkDaemon(process, http_port, log_path)
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        if daemon.process.poll() is None:
            daemon.process.kill()
            pid = daemon.job_pid()
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
            daemon.process.wait()


def produce(broker: EmbeddedBroker, records: list[Raw], *, rate: float | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    started = time.monotonic()
    for i, record in enumerate(records):
        producer.produce(record.topic, record.value, record.key, headers=record.headers)
        if rate is not None:
            producer.poll(0)
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0


async def end_offsets(broker: EmbeddedBroker) -> dict[str, dict[str, int]]:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    async with OffsetReader(settings) as reader:
        marks = await reader.watermarks([TopicPartition(t, 0) for t in TOPICS])
    return {tp.topic: {str(tp.partition): mark.high} for tp, mark in marks.items() if mark.high}


def group_offsets(broker: EmbeddedBroker) -> dict[str, dict[str, int]]:
    return committed_offsets({"bootstrap.servers": broker.bootstrap}, GROUP, TOPICS)


async def query(dsn: str, sql: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [dict(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def count(dsn: str, table: str) -> int:
    return int((await query(dsn, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, daemon: SparkDaemon, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, f"the wrapper exited: {daemon.log_path.read_text()}"
        # A check stuck on an unanswered broker request counts as "not yet", and is tried again.
        with contextlib.suppress(TimeoutError):
            if await asyncio.wait_for(check(), 30):
                return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; log: {daemon.log_path}")


async def drained(broker: EmbeddedBroker) -> bool:
    """The group's committed offsets are the log ends, on every partition that has records."""
    return group_offsets(broker) == await end_offsets(broker)


def records() -> list[Raw]:
    payloads: list[Payload] = [trade(i) for i in range(200)]
    payloads += [ticker(at=1_764_000_000.0 + i) for i in range(10)]
    payloads += [alert(), article(1), article(2, published=None)]
    return [Raw.of(p) for p in payloads]


BAD = [
    Raw("rawtrade", b"{not json"),
    Raw("rawticker", b'{"pair": "BTC/USD", "last": -1}'),
    Raw("rawalert", None),
]


async def test_records_land_once_bad_ones_are_dead_letters_and_a_group_reset_replays(
    kafka: EmbeddedBroker, migrated_database: str, spawn: Callable[..., SparkDaemon]
) -> None:
    dsn = migrated_database
    produce(kafka, records() + BAD)
    daemon = spawn()

    async def stored() -> bool:
        return await count(dsn, "trade_data") == 200 and await count(dsn, "dead_letters") == 3

    await eventually(stored, "the produced records in the tables", daemon)
    await eventually(daemon.ready, "/readyz 200", daemon)
    await eventually(lambda: drained(kafka), "group offsets at the log ends", daemon)
    trade_ids = await query(dsn, "SELECT trade_id FROM trade_data ORDER BY trade_id")
    assert [row["trade_id"] for row in trade_ids] == list(range(200))
    assert await count(dsn, "ticker_data") == 10
    assert await count(dsn, "alert_data") == 1
    articles = await query(dsn, "SELECT id, published_at FROM article_data ORDER BY id")
    assert [(a["id"], a["published_at"] is None) for a in articles] == [
        ("article-1", False),
        ("article-2", True),
    ]
    letters = await query(dsn, "SELECT topic, kafka_offset, kind FROM dead_letters ORDER BY 1")
    assert letters == [
        {"topic": "rawalert", "kafka_offset": 1, "kind": "empty"},
        {"topic": "rawticker", "kafka_offset": 10, "kind": "invalid"},
        {"topic": "rawtrade", "kafka_offset": 200, "kind": "malformed_json"},
    ]
    assert await daemon.metric("cryptoviz_spark_rows_written_total", table="trade_data") == 200
    dead = await daemon.metric("cryptoviz_dead_letters_total", topic="rawticker", reason="invalid")
    assert dead == 1
    await eventually(
        lambda: _equals(
            daemon.metric("cryptoviz_kafka_consumer_lag_messages", group=GROUP, topic="rawtrade"), 0
        ),
        "no consumer lag",
        daemon,
    )

    # The same records once more: the offsets move on, the tables do not.
    produce(kafka, records())
    await eventually(lambda: drained(kafka), "the redelivery consumed", daemon)
    assert await count(dsn, "trade_data") == 200
    assert await count(dsn, "ticker_data") == 10
    assert await daemon.metric("cryptoviz_spark_rows_duplicate_total", table="trade_data") == 200

    assert daemon.stop() == 0
    assert any(line.get("event") == "job stopped" for line in daemon.logs())

    # An operator replays rawtrade from the start (issue #6): Kafka's own way, a group reset.
    reset = await asyncio.to_thread(
        subprocess.run,
        [
            str(BIN / "cryptoviz"),
            "groups",
            "reset",
            GROUP,
            "--topic",
            "rawtrade",
            "--to-earliest",
            "--execute",
        ],
        env={**os.environ, "CRYPTOVIZ_KAFKA_BOOTSTRAP": kafka.bootstrap},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert reset.returncode == 0, reset.stderr
    assert group_offsets(kafka)["rawtrade"] == {"0": 0}
    replay = spawn()
    await eventually(lambda: drained(kafka), "the replay consumed", replay)
    # Every trade record read again (401 with the malformed one), none stored twice.
    assert await replay.metric("cryptoviz_spark_rows_duplicate_total", table="trade_data") == 400
    assert await count(dsn, "trade_data") == 200
    assert replay.stop() == 0
    assert any("consumer group offsets moved" in str(line.get("event")) for line in replay.logs())


def ends_within(pid: int, timeout_s: float) -> bool:
    """Whether the process is gone (or a zombie nobody reaped yet) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


async def _equals(value: Awaitable[float], expected: float) -> bool:
    return await value == expected


async def test_a_job_killed_mid_stream_is_restarted_and_loses_and_duplicates_nothing(
    kafka: EmbeddedBroker, migrated_database: str, spawn: Callable[..., SparkDaemon]
) -> None:
    dsn = migrated_database
    daemon = spawn()
    await eventually(daemon.ready, "/readyz 200", daemon)
    total = 6_000
    flow = threading.Thread(
        target=produce,
        args=(kafka, [Raw.of(trade(i)) for i in range(total)]),
        kwargs={"rate": 1_000},
    )
    flow.start()
    try:

        async def some_stored() -> bool:
            return await count(dsn, "trade_data") > 0

        await eventually(some_stored, "the first rows", daemon)
        pid = daemon.job_pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # the JVM, the driver and its workers, mid-stream
    finally:
        await asyncio.to_thread(flow.join)
    await eventually(
        lambda: _at_least(daemon.metric("cryptoviz_spark_job_restarts_total", reason="failed"), 1),
        "the job restarted",
        daemon,
    )

    async def all_stored() -> bool:
        return await count(dsn, "trade_data") == total and await drained(kafka)

    await eventually(all_stored, "every trade stored after the restart", daemon, timeout_s=180)
    summary = await query(
        dsn,
        "SELECT count(*) AS n, count(DISTINCT trade_id) AS ids, min(trade_id) AS lo, "
        "max(trade_id) AS hi FROM trade_data",
    )
    assert summary == [{"n": total, "ids": total, "lo": 0, "hi": total - 1}]

    # The wrapper killed outright (a supervisor's SIGKILL): its job must not outlive it.
    job = daemon.job_pid()
    assert job is not None
    daemon.process.kill()
    daemon.process.wait()
    assert await asyncio.to_thread(ends_within, job, 15)


async def test_a_database_outage_and_a_broker_restart_lose_nothing(
    kafka: EmbeddedBroker, workdir: Path, spawn: Callable[..., SparkDaemon]
) -> None:
    database = EmbeddedPostgres(workdir / f"pg-{free_port()}", port=free_port())
    database.start()
    try:
        await migrate_dsn(database.dsn)
        dsn = database.dsn
        daemon = spawn(CRYPTOVIZ_DB_DSN=dsn)
        produce(kafka, [Raw.of(trade(i)) for i in range(100)])

        async def stored(n: int) -> bool:
            return await count(dsn, "trade_data") == n

        await eventually(lambda: stored(100), "the first trades", daemon)

        # The database goes away for a while: batches wait, the job keeps running.
        await asyncio.to_thread(database.stop)
        produce(kafka, [Raw.of(trade(i)) for i in range(100, 200)])
        await eventually(
            lambda: _at_least(daemon.metric("cryptoviz_spark_db_retries_total"), 1),
            "batch retries while the database is away",
            daemon,
        )
        await asyncio.to_thread(database.start)
        await eventually(lambda: stored(200), "the trades sent during the outage", daemon)
        assert await daemon.metric("cryptoviz_spark_job_restarts_total", reason="failed") == 0

        # The embedded broker comes back empty (memory only): producers re-create the topics
        # and start again at offset 0, below the checkpoint; the new records still land.
        await asyncio.to_thread(kafka.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(kafka.start)
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in TOPICS]).values():
            future.result(10)
        produce(kafka, [Raw.of(trade(i)) for i in range(200, 250)])
        await eventually(lambda: stored(250), "the trades sent after the restart", daemon, 180)
        await eventually(lambda: drained(kafka), "group offsets on the new log", daemon)
        assert daemon.stop() == 0
    finally:
        database.stop()


async def _at_least(value: Awaitable[float], minimum: float) -> bool:
    return await value >= minimum
