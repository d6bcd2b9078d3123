"""Kafka to PostgreSQL through the Spark ingestion job: sustained rows/s, event-to-row latency.

Everything real and on this machine: an embedded broker and an embedded PostgreSQL started for
the run, the schema migrated, and ``cryptoviz-spark ingestion`` (the wrapper daemon, spark-submit,
Spark local[2], the Python Kafka source) with its default trigger of 1 s. Topics have the seed's
single partition.

Sustained: once the job is warm, a backlog of trades and tickers (9:1) is produced as fast as the
producer goes while the job drains it; the rate is records over the time from the first send to
the moment the last row is visible in PostgreSQL. Spark's own processed rows/s for the largest
batch is printed beside it (the first batch of a backlog is small: it is planned while the
producer is still sending). The producer runs on the same two cores.

Latency: trades offered at 2,000/s; a trade's latency runs from its send (its event time) to the
first poll (every 50 ms) that sees its row in ``trade_data``: rows of one partition commit in
offset order, so a row count is a watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench import _table
from bench._timing import percentile
from shared.db.migrate import migrate_dsn
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import EmbeddedPostgres
from shared.embedded.process import free_port
from shared.envelope import RawTicker, RawTrade, encode

BIN = Path(sys.executable).parent
TOPICS = ("rawarticle", "rawticker", "rawtrade", "rawalert")
POLL_S = 0.05
T0 = 1_764_000_000.0


@dataclass(frozen=True, slots=True)
class Plan:
    backlog: int
    latency_s: float
    rate: int = 2_000


FULL = Plan(backlog=400_000, latency_s=60.0)
QUICK = Plan(backlog=60_000, latency_s=15.0)


def _trade(trade_id: int, at: float) -> bytes:
    return encode(
        RawTrade(
            pair="BTC/USD", price=97_000.0, volume=0.1, timestamp=at, side="b", trade_id=trade_id
        ),
        producer="bench",
    ).value


def _ticker(number: int) -> bytes:
    return encode(
        RawTicker(
            pair="ETH/USD",
            last=3_350.0,
            bid=3_349.9,
            ask=3_350.1,
            volume_24h=1_000.0,
            timestamp=T0 + number / 1000,
            pct_change=0.5,
        ),
        producer="bench",
    ).value


class Pipeline:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.broker = EmbeddedBroker(port=free_port(), log_path=scratch / "broker.log")
        self.postgres = EmbeddedPostgres(scratch / "postgres", port=free_port())
        self.daemon: subprocess.Popen[bytes] | None = None
        self.next_trade = 0

    def start(self) -> None:
        self.broker.start()
        self.postgres.start()
        asyncio.run(migrate_dsn(self.postgres.dsn))
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in TOPICS]).values():
            future.result(10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
        env.update(
            CRYPTOVIZ_KAFKA_BOOTSTRAP=self.broker.bootstrap,
            CRYPTOVIZ_KAFKA_IDEMPOTENCE="false",
            CRYPTOVIZ_DB_DSN=self.postgres.dsn,
            CRYPTOVIZ_HTTP_PORT=str(free_port()),
            CRYPTOVIZ_DATA_DIR=str(self.scratch / "data"),
            CRYPTOVIZ_LOG_FORMAT="json",
            CRYPTOVIZ_SPARK_MASTER="local[2]",
            CRYPTOVIZ_SPARK_STARTING_OFFSETS="earliest",
            CRYPTOVIZ_SPARK_CONF="spark.ui.enabled=false",
        )
        self.log_path = self.scratch / "spark.log"
        with self.log_path.open("wb") as out:
            self.daemon = subprocess.Popen(
                [str(BIN / "cryptoviz-spark"), "ingestion"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.postgres.stop()
        self.broker.stop()

    def producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "linger.ms": 5,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
            }
        )

    async def rows(self, connection: asyncpg.Connection) -> int:
        return int(await connection.fetchval("SELECT count(*) FROM trade_data"))

    async def wait_rows(
        self, connection: asyncpg.Connection, wanted: int, timeout_s: float = 600
    ) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"the Spark wrapper exited; see {self.log_path}")
            if await self.rows(connection) >= wanted:
                return time.monotonic()
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"{wanted} trade rows not stored within {timeout_s:g} s")

    def produce_trades(self, count: int, *, rate: float | None = None) -> list[float]:
        """Trades with consecutive ids; returns each one's send time (monotonic)."""
        producer = self.producer()
        sent: list[float] = []
        started = time.monotonic()
        for i in range(count):
            if rate is not None:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            sent.append(time.monotonic())
            producer.produce("rawtrade", _trade(self.next_trade, time.time()), b"BTC/USD")
            self.next_trade += 1
            producer.poll(0)
        producer.flush(60)
        return sent

    def produce_backlog(self, trades: int, tickers: int) -> None:
        producer = self.producer()
        for i in range(trades):
            producer.produce("rawtrade", _trade(self.next_trade, T0 + i / 1000), b"BTC/USD")
            self.next_trade += 1
            if i % 10 == 9:
                producer.produce("rawticker", _ticker(i // 10), b"ETH/USD")
            if i % 10_000 == 0:
                producer.poll(0)
        producer.flush(120)
        assert tickers == trades // 10

    def spark_rates(self, since: float) -> list[tuple[int, float]]:
        """Spark's (input rows, processed rows/s) of the batches that read records after
        ``since``."""
        rates = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"query progress"' not in line:
                continue
            record = json.loads(line)
            stamp = record.get("timestamp", "")
            if record.get("input_rows") and _epoch(stamp) >= since:
                rates.append(
                    (int(record["input_rows"]), float(record["processed_rows_per_second"]))
                )
        return rates


def _epoch(stamp: str) -> float:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cryptoviz-bench-"))
    path.chmod(0o755)  # PostgreSQL runs as its own user under root
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _measure(pipeline: Pipeline, plan: Plan) -> list[list[str]]:
    connection = await asyncpg.connect(pipeline.postgres.dsn)
    try:
        # Warm: the JVM, the Python workers, the first plans.
        await asyncio.to_thread(pipeline.produce_trades, 5_000)
        await pipeline.wait_rows(connection, 5_000, timeout_s=300)
        await asyncio.sleep(2)

        trades = plan.backlog * 9 // 10
        base = await pipeline.rows(connection)
        wall_since = time.time()
        started = time.monotonic()
        await asyncio.to_thread(pipeline.produce_backlog, trades, trades // 10)
        produced_s = time.monotonic() - started
        done = await pipeline.wait_rows(connection, base + trades)
        records = trades + trades // 10
        sustained = records / (done - started)
        await asyncio.sleep(3)  # the driver reports a batch's progress up to 1 s after it
        spark = pipeline.spark_rates(wall_since)

        base = await pipeline.rows(connection)
        count = int(plan.rate * plan.latency_s)
        offered = asyncio.create_task(
            asyncio.to_thread(pipeline.produce_trades, count, rate=plan.rate)
        )
        seen: list[tuple[float, int]] = []
        while not offered.done() or (seen and seen[-1][1] < base + count):
            seen.append((time.monotonic(), await pipeline.rows(connection)))
            await asyncio.sleep(POLL_S)
        sent = await offered
        latencies = []
        position = 0
        for i, sent_at in enumerate(sent):
            while seen[position][1] < base + i + 1:
                position += 1
            latencies.append(seen[position][0] - sent_at)
    finally:
        await connection.close()
    latencies.sort()
    largest = (
        f"{_table.count(max(spark)[1])} ({_table.count(max(spark)[0])} rows)" if spark else "n/a"
    )
    return [
        ["backlog drained (records/s, end to end)", _table.count(sustained)],
        ["  records (trades + tickers)", _table.count(records)],
        ["  producer alone took (s)", f"{produced_s:.1f}"],
        ["  Spark processed rows/s, largest batch", largest],
        [f"latency at {plan.rate:,}/s, p50 (s)", f"{percentile(latencies, 0.5):.2f}"],
        [f"latency at {plan.rate:,}/s, p99 (s)", f"{percentile(latencies, 0.99):.2f}"],
        [f"latency at {plan.rate:,}/s, max (s)", f"{latencies[-1]:.2f}"],
        ["  trades offered", _table.count(count)],
    ]


def main(*, quick: bool = False) -> None:
    plan = QUICK if quick else FULL
    with _scratch() as scratch:
        pipeline = Pipeline(scratch)
        try:
            pipeline.start()
            rows = asyncio.run(_measure(pipeline, plan))
        finally:
            pipeline.stop()
    print(
        _table.render(
            "Spark ingestion, Kafka to PostgreSQL (cryptoviz-spark ingestion, local[2], "
            "trigger 1 s, one partition per topic)",
            ["measure", "value"],
            rows,
        )
    )
