"""``cryptoviz-kraken`` end to end: the real daemon, started with its console script, against the
fake Kraken v2 server over loopback, producing to a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.kraken.fake_server import FakeKraken
from shared.embedded.broker import EmbeddedBroker
from shared.envelope import Payload, RawAlert, RawTicker, RawTrade, decode
from tests.conftest import free_port
from tests.daemon_http import DaemonHttp

# Each test runs the daemon as a process, as an operator does; they are slow but few.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PAIRS = ("BTC/USD", "ETH/USD")


@dataclass
class RunningDaemon(DaemonHttp):
    process: subprocess.Popen[str]
    http_port: int
    output: list[str] = field(default_factory=list)

    async def wait_until(
        self, check: Callable[[], object], what: str, timeout_s: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "daemon exited early"
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=timeout_s)
        self.output = out.splitlines()
        return self.process.returncode

    def logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.output if line.startswith("{")]


def spawn_kraken(url: str, broker: EmbeddedBroker, workdir: Path, **env: str) -> RunningDaemon:
    http_port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    process = subprocess.Popen(
        [str(BIN / "cryptoviz-kraken")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **clean,
            "CRYPTOVIZ_KRAKEN_URL": url,
            "CRYPTOVIZ_KRAKEN_PAIRS": ",".join(PAIRS),
            "CRYPTOVIZ_KAFKA_BOOTSTRAP": broker.bootstrap,
            "CRYPTOVIZ_KAFKA_IDEMPOTENCE": "false",  # the embedded broker cannot
            "CRYPTOVIZ_HTTP_PORT": str(http_port),
            "CRYPTOVIZ_DATA_DIR": str(workdir / f"kraken-{http_port}"),
            "CRYPTOVIZ_LOG_FORMAT": "json",
            "CRYPTOVIZ_ALERT_THRESHOLD_PCT": "3",
            "CRYPTOVIZ_ALERT_WINDOW_S": "30",
            **env,
        },
    )
    return RunningDaemon(process, http_port)


@asynccontextmanager
async def kraken_daemon(
    fake: FakeKraken, broker: EmbeddedBroker, workdir: Path, **env: str
) -> AsyncIterator[RunningDaemon]:
    daemon = spawn_kraken(fake.url, broker, workdir, **env)
    process = daemon.process
    try:
        await daemon.wait_until(daemon.ready, "readiness")
        yield daemon
    finally:
        if process.poll() is None:
            daemon.stop()
        # Shown by pytest only when the test fails: the daemon's own account of what happened.
        print("\n".join(daemon.output[-40:]))


async def read_topic(broker: EmbeddedBroker, topic: str) -> list[tuple[bytes, Payload]]:
    """Every record of ``topic`` from the beginning, decoded (a decoding error fails the test)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[tuple[bytes, Payload]] = []
        idle_polls = 0
        while idle_polls < 3:
            batch = await consumer.getmany(timeout_ms=300)
            fetched = [r for rs in batch.values() for r in rs]
            idle_polls = 0 if fetched else idle_polls + 1
            records += [(r.key or b"", decode(topic, r.value, r.headers)) for r in fetched]
        return records
    finally:
        await consumer.stop()


def trade_ids(records: list[tuple[bytes, Payload]], pair: str) -> list[int]:
    return [p.trade_id or 0 for _, p in records if isinstance(p, RawTrade) and p.pair == pair]


@pytest.fixture
async def fake() -> AsyncIterator[FakeKraken]:
    async with FakeKraken(pairs=PAIRS, trades_per_second=20, ticker_interval_s=0.5, seed=7) as f:
        yield f


async def test_the_daemon_fills_the_three_topics_and_one_spike_gives_one_alert(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    async with kraken_daemon(fake, private_broker, workdir) as daemon:
        await asyncio.sleep(1.0)
        fake.spike("ETH/USD", pct=8.0, over_s=1.0)
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_alerts_total", pair="ETH/USD", type="price_spike"),
            "the spike's alert",
        )
        await asyncio.sleep(1.5)  # the move's tail must not alert again
        assert daemon.stop() == 0

    trades = await read_topic(private_broker, "rawtrade")
    tickers = await read_topic(private_broker, "rawticker")
    alerts = await read_topic(private_broker, "rawalert")
    for pair in PAIRS:
        ids = trade_ids(trades, pair)
        assert len(ids) > 20
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate
    assert all(key.decode() == payload.pair for key, payload in trades)  # type: ignore[attr-defined]
    assert {p.pair for _, p in tickers if isinstance(p, RawTicker)} == set(PAIRS)
    assert [(p.pair, p.type) for _, p in alerts if isinstance(p, RawAlert)] == [
        ("ETH/USD", "price_spike")
    ]
    spike = alerts[0][1]
    assert isinstance(spike, RawAlert)
    assert spike.change >= 3.0
    assert (spike.threshold, spike.window_s) == (3.0, 30.0)
    assert daemon.logs()[-1]["event"] == "daemon stopped"


async def test_after_a_forced_disconnect_no_trade_is_missing_or_duplicated(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    async with kraken_daemon(fake, private_broker, workdir) as daemon:
        await asyncio.sleep(1.0)
        await fake.disconnect(1001)
        await daemon.wait_until(lambda: fake.connections_total >= 2, "a reconnect")
        await daemon.wait_until(daemon.ready, "readiness after the reconnect")
        await asyncio.sleep(1.0)
        # The reconnect's snapshot repeated trades already published: all of them were dropped.
        duplicates = await daemon.metric("cryptoviz_kraken_trade_duplicates_total", pair="BTC/USD")
        assert duplicates > 0
        assert await daemon.metric("cryptoviz_kraken_reconnects_total", reason="close_1001") == 1
        assert await daemon.metric("cryptoviz_kraken_trade_gaps_total", pair="BTC/USD") == 0
        assert daemon.stop() == 0

    trades = await read_topic(private_broker, "rawtrade")
    for pair in PAIRS:
        ids = trade_ids(trades, pair)
        assert ids == list(range(ids[0], ids[0] + len(ids)))


async def test_a_silent_connection_is_replaced(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    # Connections made during the stall are silent too; a short backoff cap keeps the test short.
    async with kraken_daemon(
        fake,
        private_broker,
        workdir,
        CRYPTOVIZ_KRAKEN_SILENCE_TIMEOUT_S="1",
        CRYPTOVIZ_KRAKEN_RECONNECT_MAX_S="1",
    ) as daemon:
        fake.stall(3.0)
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kraken_reconnects_total", reason="silent"),
            "the watchdog to replace the silent connection",
        )
        await daemon.wait_until(daemon.ready, "readiness after the stall")
        assert daemon.stop() == 0


async def test_lost_acknowledgements_do_not_keep_a_flowing_connection_unready(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    # Stalled from the start, the server drops the status and the subscription acks of the
    # daemon's first connection, then streams data to it: the data proves the subscription.
    fake.stall(2.0)
    async with kraken_daemon(
        fake, private_broker, workdir, CRYPTOVIZ_KRAKEN_SILENCE_TIMEOUT_S="10"
    ) as daemon:
        assert fake.connections_total == 1
        assert await daemon.metric("cryptoviz_kraken_subscribed_symbols", channel="trade") == 2
        assert daemon.stop() == 0


async def test_malformed_frames_are_counted_and_survived(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    async with kraken_daemon(fake, private_broker, workdir) as daemon:
        fake.send_raw("{not json")
        fake.send_raw('{"channel": "candles", "type": "update", "data": []}')
        fake.send_raw(
            '{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", '
            '"side": "buy", "price": -5, "qty": 1, "ord_type": "market", "trade_id": 1, '
            '"timestamp": "2026-01-01T00:00:00.000000Z"}]}'
        )
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kraken_invalid_total", kind="malformed_json"),
            "malformed JSON to be counted",
        )
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kraken_invalid_total", kind="unknown_channel"),
            "the unknown channel to be counted",
        )
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kraken_invalid_total", kind="invalid"),
            "the negative price to be counted",
        )
        assert await daemon.ready()  # still connected, still producing
        assert fake.connections_total == 1
        assert daemon.stop() == 0


async def test_maintenance_status_makes_the_daemon_not_ready(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    async with kraken_daemon(fake, private_broker, workdir) as daemon:
        fake.set_status("maintenance")
        await daemon.wait_until(lambda: _not(daemon.ready()), "readiness to drop")
        _, body = await daemon.get("/readyz")
        assert json.loads(body)["checks"]["kraken_online"] is False
        fake.set_status("online")
        await daemon.wait_until(daemon.ready, "readiness to come back")
        assert daemon.stop() == 0


async def test_a_rejected_symbol_is_counted_and_the_others_go_on(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    async with kraken_daemon(
        fake, private_broker, workdir, CRYPTOVIZ_KRAKEN_PAIRS="XBT/USD,ETH/USD,NOPE/USD"
    ) as daemon:
        assert await daemon.metric("cryptoviz_kraken_subscribe_errors_total", channel="trade") == 1
        assert await daemon.metric("cryptoviz_kraken_subscribed_symbols", channel="trade") == 2
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kafka_messages_produced_total", topic="rawtrade"),
            "trades of the accepted symbols",
        )
        assert daemon.stop() == 0


async def _not(check: object) -> bool:
    assert asyncio.iscoroutine(check)
    return not await check


async def test_a_restart_does_not_republish_the_snapshot(
    fake: FakeKraken, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    data_dir = workdir / "kraken-restart"
    async with kraken_daemon(
        fake, private_broker, workdir, CRYPTOVIZ_DATA_DIR=str(data_dir)
    ) as daemon:
        await asyncio.sleep(1.0)
        assert daemon.stop() == 0
    async with kraken_daemon(
        fake, private_broker, workdir, CRYPTOVIZ_DATA_DIR=str(data_dir)
    ) as daemon:
        await asyncio.sleep(1.0)
        assert daemon.stop() == 0
    trades = await read_topic(private_broker, "rawtrade")
    for pair in PAIRS:
        ids = trade_ids(trades, pair)
        assert len(ids) == len(set(ids))


async def test_an_unreachable_kraken_keeps_the_daemon_alive_and_not_ready(
    private_broker: EmbeddedBroker, workdir: Path
) -> None:
    daemon = spawn_kraken(f"ws://127.0.0.1:{free_port()}/v2", private_broker, workdir)
    try:
        await daemon.wait_until(
            lambda: daemon.metric("cryptoviz_kraken_reconnects_total", reason="connect_failed"),
            "connection failures to be counted",
        )
        status, body = await daemon.get("/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["kraken_connected"] is False
    finally:
        assert daemon.stop() == 0
