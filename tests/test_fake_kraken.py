"""The fake Kraken v2 server, driven by a real websockets client over loopback.

Every frame the client reads goes through the producer's own parser (services.kraken.protocol),
so these tests also check that the fake speaks what the parser understands.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.kraken import protocol
from services.kraken.fake_server import (
    DEFAULT_PAIRS,
    FakeKraken,
    FaultPlan,
    main,
    malformed_frames,
    serve_forever,
)
from services.kraken.protocol import (
    Frame,
    Heartbeat,
    Pong,
    ProtocolError,
    Status,
    SubscriptionAck,
    TickerMessage,
    TradeMessage,
    parse_frame,
    ticker_payload,
    trade_payload,
)
from shared.envelope import encode

F = TypeVar("F", bound=Frame)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def kraken() -> AsyncIterator[FakeKraken]:
    async with FakeKraken(
        seed=7,
        trades_per_second=40,
        ticker_interval_s=0.1,
        heartbeat_interval_s=0.1,
        first_trade_id=1,
    ) as fake:
        yield fake


async def next_frame(ws: ClientConnection, within: float = 2.0) -> Frame:
    async with asyncio.timeout(within):
        return parse_frame(await ws.recv())


async def next_of(ws: ClientConnection, kind: type[F], within: float = 2.0) -> F:
    """The next frame of ``kind``, skipping others (heartbeats, other channels)."""
    async with asyncio.timeout(within):
        while True:
            frame = parse_frame(await ws.recv())
            if isinstance(frame, kind):
                return frame


async def frames_for(ws: ClientConnection, seconds: float) -> list[Frame]:
    """Everything that arrives within ``seconds``."""
    received: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                received.append(parse_frame(await ws.recv()))
        except TimeoutError:
            break
    return received


async def subscribed(
    ws: ClientConnection, channel: protocol.Channel, pair: str, *, snapshot: bool = True
) -> SubscriptionAck:
    await ws.send(protocol.subscribe(channel, [pair], 1, snapshot=snapshot))
    ack = await next_of(ws, SubscriptionAck)
    assert ack.success, ack.error
    return ack


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the connection; the close code it sent."""
    async with asyncio.timeout(2):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None


def trade_ids(frames: list[Frame]) -> list[int]:
    return [row.trade_id for f in frames if isinstance(f, TradeMessage) for row in f.data]


async def test_status_on_connect(kraken: FakeKraken) -> None:
    assert kraken.url == f"ws://127.0.0.1:{kraken.port}/v2"
    async with connect(kraken.url) as ws:
        status = await next_frame(ws)
    assert isinstance(status, Status)
    assert (status.system, status.api_version) == ("online", "v2")
    assert status.connection_id is not None
    assert kraken.connections_total == 1


async def test_acks_per_symbol_and_refusal_of_unknown_pair(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await ws.send(protocol.subscribe("trade", ["BTC/USD", "XXX/USD"], 5, snapshot=False))
        first, second = await next_of(ws, SubscriptionAck), await next_of(ws, SubscriptionAck)
        acks = {ack.symbol: ack for ack in (first, second)}
        assert acks["BTC/USD"].success
        assert (acks["BTC/USD"].channel, acks["BTC/USD"].req_id) == ("trade", 5)
        refusal = acks["XXX/USD"]
        assert not refusal.success
        assert refusal.error == "Currency pair not supported XXX/USD"
        assert refusal.req_id == 5

        await ws.send(protocol.subscribe("trade", ["BTC/USD"], 6))
        again = await next_of(ws, SubscriptionAck)
        assert (again.success, again.error) == (False, "Already subscribed")


async def test_trade_snapshot_then_sequential_updates(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD")
        snapshot = await next_of(ws, TradeMessage)
        assert snapshot.type == "snapshot"
        assert len(snapshot.data) == protocol.SNAPSHOT_TRADES
        # Until a few updates arrived, however loaded the machine (40 trades/s: ~0.2 s).
        updates: list[Frame] = []
        async with asyncio.timeout(5):
            while len(trade_ids(updates)) <= 5:
                updates.append(await next_of(ws, TradeMessage))
    assert all(f.type == "update" for f in updates if isinstance(f, TradeMessage))
    ids = trade_ids([snapshot, *updates])
    assert len(ids) > protocol.SNAPSHOT_TRADES + 5
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # one sequence, no gap, no repeat
    for row in snapshot.data:
        payload = trade_payload(row)
        encode(payload, producer="test")  # validates as consumers will
        assert payload.pair == "BTC/USD"


async def test_ticker_snapshot_then_updates(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "ticker", "ETH/USD")
        snapshot = await next_of(ws, TickerMessage)
        assert snapshot.type == "snapshot"
        assert len(snapshot.data) == 1
        update = await next_of(ws, TickerMessage)
    assert update.type == "update"
    row = update.data[0]
    assert row.last is not None
    assert row.bid < row.ask
    assert row.bid <= row.last <= row.ask
    payload = ticker_payload(row, received_at=time.time())
    assert payload.timestamp == protocol.parse_rfc3339(row.timestamp or "")
    assert abs(payload.timestamp - time.time()) < 5
    encode(payload, producer="test")


async def test_heartbeats_flow_only_once_subscribed_and_idle() -> None:
    async with (
        FakeKraken(trades_per_second=0, ticker_interval_s=60, heartbeat_interval_s=0.1) as fake,
        connect(fake.url) as ws,
    ):
        assert isinstance(await next_frame(ws), Status)
        assert await frames_for(ws, 0.3) == []  # Kraken: heartbeats start on subscription
        await subscribed(ws, "ticker", "BTC/USD", snapshot=False)
        started = time.monotonic()
        beats = await frames_for(ws, 0.55)
        assert all(isinstance(frame, Heartbeat) for frame in beats)
        # About five at 0.1 s; a loaded machine may deliver fewer, never a flood.
        assert beats
        assert len(beats) <= 7
        assert time.monotonic() - started < 1


async def test_ping_pong(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await ws.send(protocol.ping(9))
        pong = await next_of(ws, Pong)
    assert pong.req_id == 9
    assert pong.success
    assert pong.time_in is not None
    assert pong.time_out is not None
    assert protocol.parse_rfc3339(pong.time_in) <= protocol.parse_rfc3339(pong.time_out)


@pytest.mark.parametrize("pct", [5.0, -5.0])
async def test_spike_moves_the_price_by_about_the_asked_percent(pct: float) -> None:
    async with (
        FakeKraken(seed=3, trades_per_second=20, volatility=0.0001, first_trade_id=1) as fake,
        connect(fake.url) as ws,
    ):
        await subscribed(ws, "trade", "SOL/USD", snapshot=False)
        before = fake.price("SOL/USD")
        fake.spike("SOL/USD", pct, over_s=0.3)
        frames = await frames_for(ws, 0.5)
        # A loaded machine may deliver the move late; it still arrives as trades.
        async with asyncio.timeout(3):
            while len(trade_ids(frames)) < 5:
                frames.append(await next_of(ws, TradeMessage))
    prices = [row.price for f in frames if isinstance(f, TradeMessage) for row in f.data]
    assert len(prices) >= 5  # the move shows as trades, not as a jump
    moved = (prices[-1] / before - 1) * 100
    assert moved == pytest.approx(pct, abs=0.5)
    # The path gets there gradually: the first trade is nowhere near the target yet.
    assert abs(prices[0] / before - 1) * 100 < abs(pct) / 2


@pytest.mark.parametrize("code", [1001, 1011, 4000])
async def test_disconnect_closes_every_connection_with_the_code(
    kraken: FakeKraken, code: int
) -> None:
    async with connect(kraken.url) as first, connect(kraken.url) as second:
        await next_frame(first)
        await next_frame(second)
        await kraken.disconnect(code, "scripted")
        assert [await close_code(first), await close_code(second)] == [code, code]


async def test_stall_sends_nothing_for_its_duration(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD", snapshot=False)
        before = trade_ids(await frames_for(ws, 0.2))
        assert before
        kraken.stall(0.6)
        stalled_at = time.monotonic()
        # What was written before the stall is already in flight: read it off first.
        before += trade_ids(await frames_for(ws, 0.05))
        silent = await frames_for(ws, 0.6 - (time.monotonic() - stalled_at) - 0.05)
        assert silent == []  # not even heartbeats (interval 0.1 s)
        assert ws.state.name == "OPEN"
        after = await next_of(ws, TradeMessage, within=1.0)
    assert time.monotonic() - stalled_at >= 0.55
    # The market went on meanwhile: the subscriber sees a gap it can detect.
    assert after.data[0].trade_id > before[-1] + 1


async def test_reconnect_snapshot_overlaps_what_was_received(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD")
        first = trade_ids(await frames_for(ws, 0.3))
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD")
        snapshot = await next_of(ws, TradeMessage)
        assert snapshot.type == "snapshot"
        second = trade_ids([snapshot, *await frames_for(ws, 0.2)])
    assert kraken.connections_total == 2
    overlap = set(first) & set(second)
    assert overlap  # the snapshot resends trades already seen: the client must dedupe
    merged = sorted(set(first) | set(second))
    assert merged == list(range(merged[0], merged[-1] + 1))  # deduped, nothing lost


async def test_unsubscribe_stops_the_stream(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD", snapshot=False)
        await next_of(ws, TradeMessage)
        await ws.send(protocol.unsubscribe("trade", ["BTC/USD"], 3))
        ack = await next_of(ws, SubscriptionAck)
        assert (ack.method, ack.success, ack.symbol) == ("unsubscribe", True, "BTC/USD")
        assert trade_ids(await frames_for(ws, 0.25)) == []
        await ws.send(protocol.unsubscribe("trade", ["BTC/USD"], 4))
        refusal = await next_of(ws, SubscriptionAck)
        assert (refusal.success, refusal.error) == (False, "Subscription Not Found")


async def test_status_change_is_broadcast_and_pauses_trading(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await subscribed(ws, "trade", "BTC/USD", snapshot=False)
        kraken.set_status("maintenance")
        status = await next_of(ws, Status)
        assert status.system == "maintenance"
        quiet = await frames_for(ws, 0.3)
        assert trade_ids(quiet) == []
        assert any(isinstance(frame, Heartbeat) for frame in quiet)
        async with connect(kraken.url) as late:
            joined = await next_frame(late)
            assert isinstance(joined, Status)
            assert joined.system == "maintenance"
        kraken.set_status("online")
        assert (await next_of(ws, Status)).online
        await next_of(ws, TradeMessage)
    with pytest.raises(ValueError, match="system must be one of"):
        kraken.set_status("closed")


async def test_send_raw_reaches_every_client(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await next_frame(ws)
        kraken.send_raw("this is not JSON")
        async with asyncio.timeout(2):
            raw = await ws.recv()
        assert raw == "this is not JSON"
        with pytest.raises(ProtocolError) as caught:
            parse_frame(raw)
        assert caught.value.kind == "malformed_json"


def use(raw: str) -> None:
    """What the producer does with a frame: parse it, then convert every row."""
    frame = parse_frame(raw)
    if isinstance(frame, TradeMessage):
        for row in frame.data:
            trade_payload(row)


def test_every_scripted_malformed_frame_is_refused_by_the_parser() -> None:
    for raw in malformed_frames("BTC/USD"):
        with pytest.raises(ProtocolError):
            use(raw)


async def test_bad_requests_get_an_error_reply(kraken: FakeKraken) -> None:
    async with connect(kraken.url) as ws:
        await next_frame(ws)
        await ws.send(b'{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"]}}')
        refusal = await next_of(ws, SubscriptionAck)
        assert not refusal.success
        assert refusal.error is not None
        assert "channel" in refusal.error
        await ws.send("garbage")
        raw = await asyncio.wait_for(ws.recv(), 2)
        assert '"success":false' in str(raw)


async def test_only_the_v2_path_is_served(kraken: FakeKraken) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"ws://127.0.0.1:{kraken.port}/"):
            pass
    assert caught.value.response.status_code == 404


async def test_stop_is_idempotent_and_closes_clients() -> None:
    fake = FakeKraken(pairs=["xbt/usd"])
    assert fake.pairs == ("BTC/USD",)
    await fake.start()
    async with connect(fake.url) as ws:
        await next_frame(ws)
        await fake.stop()
        await fake.stop()
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
        assert caught.value.rcvd is not None
        assert caught.value.rcvd.code == 1001


def test_same_seed_same_market() -> None:
    one, two = FakeKraken(seed=11), FakeKraken(seed=11)
    assert [one.price(p) for p in DEFAULT_PAIRS] == [two.price(p) for p in DEFAULT_PAIRS]
    with pytest.raises(ValueError, match="not a pair of this fake"):
        one.spike("PEPE/USD", 5, 1)
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        FakeKraken(pairs=["BTCUSD"])


async def test_serve_forever_runs_a_scenario_until_stopped() -> None:
    stop, listening = asyncio.Event(), asyncio.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        listening.set()

    fake = FakeKraken(pairs=["BTC/USD"], first_trade_id=1)
    plan = FaultPlan(scenario="disconnect", first_after_s=0.2, every_s=60, close_code=1001)
    server = asyncio.create_task(serve_forever(fake, plan, stop=stop, say=say))
    try:
        await asyncio.wait_for(listening.wait(), 2)
        assert said[0].endswith(fake.url)
        async with connect(fake.url) as ws:
            assert await close_code(ws) == 1001
        assert any("disconnect" in line for line in said)
    finally:
        stop.set()
        await asyncio.wait_for(server, 2)


def test_cli_refuses_bad_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--pairs", "BTCUSD"])
    assert caught.value.code == 2
    assert "BTCUSD" in capsys.readouterr().err


@pytest.mark.slow
async def test_cli_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.kraken.fake_server",
        *("--port", "0", "--pairs", "BTC/USD,XBT/EUR", "--trades-per-second", "20"),
        *("--scenario", "spike", "--fault-after", "0.1"),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        match = re.search(r"ws://127\.0\.0\.1:\d+/v2", line)
        assert match, line
        async with connect(match.group(0)) as ws:
            assert isinstance(await next_frame(ws), Status)
            await subscribed(ws, "trade", "BTC/EUR")
            assert (await next_of(ws, TradeMessage)).type == "snapshot"
        fault = (await asyncio.wait_for(process.stdout.readline(), 5)).decode()
        assert fault.startswith("fault: spike")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
