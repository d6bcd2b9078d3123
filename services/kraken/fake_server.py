"""A fake Kraken WebSocket v2 server: the producer's counterpart in tests and offline demos.

It speaks the documented v2 public protocol (see :mod:`services.kraken.protocol` for the frames
and their sources): a ``status`` frame on connect, per-symbol subscribe acknowledgements and
refusals (``Currency pair not supported XXX/USD``), a snapshot then updates on ``ticker`` and
``trade``, ``heartbeat`` frames on idle subscribed connections, ``ping`` -> ``pong``.

The market is a seeded random walk per pair. It keeps running whether or not anyone listens, and
trade ids are one sequence per pair for the life of the server, never restarted per connection:
a client that reconnects gets the last 50 trades again in its snapshot (it must dedupe by
``trade_id``), and a client that was silenced sees a gap. By default the first id is derived from
the wall clock, so a restarted fake server does not reuse ids an earlier run already handed out
(idempotent stores would silently swallow them as duplicates).

Faults, callable while running (and as ``--scenario`` in the CLI): :meth:`FakeKraken.spike`,
:meth:`FakeKraken.disconnect`, :meth:`FakeKraken.stall`, :meth:`FakeKraken.send_raw`,
:meth:`FakeKraken.set_status`.

Where the fake is simpler than Kraken: ticker updates come every ``ticker_interval_s`` rather than
on every trade; the 24 h volume only grows; error texts other than "Currency pair not supported"
are plausible, not recorded. Like Kraken, trading (and so trades and ticker updates) stops while
the system status is not ``online``, and heartbeats only flow once a connection has subscribed.

Run it: ``python -m services.kraken.fake_server --port 8765 --scenario spike`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Literal, Self, get_args

import msgspec
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.kraken.protocol import (
    SNAPSHOT_TRADES,
    SYSTEM_STATES,
    format_rfc3339,
    normalise_pair,
)

log = logging.getLogger(__name__)

PATH: Final = "/v2"
API_VERSION: Final = "v2"
SERVICE_VERSION: Final = "2.0.10"  # what Kraken's status frame said in recent recordings

# Rough prices, so a demo looks like a market; any other pair starts at FALLBACK_START_PRICE.
DEFAULT_START_PRICES: Final[dict[str, float]] = {
    "BTC/USD": 65_000.0,
    "ETH/USD": 3_200.0,
    "SOL/USD": 150.0,
    "XRP/USD": 0.55,
    "ADA/USD": 0.45,
    "DOGE/USD": 0.12,
    "DOT/USD": 6.5,
    "LTC/USD": 80.0,
    "LINK/USD": 14.0,
    "AVAX/USD": 30.0,
}
DEFAULT_PAIRS: Final[tuple[str, ...]] = tuple(DEFAULT_START_PRICES)
FALLBACK_START_PRICE: Final = 100.0

# Per-trade relative volatility of the random walk (3 bps) and the pull back toward the start
# price (per trade), so an hour-long demo wanders a few percent instead of drifting away.
DEFAULT_VOLATILITY: Final = 0.0003
_MEAN_REVERSION: Final = 0.0001
_SPREAD: Final = 0.0002  # bid/ask around the last price, relative
_TRADE_NOTIONAL: Final = 500.0  # median trade size in quote currency

Scenario = Literal["calm", "spike", "disconnect", "stall", "malformed", "maintenance"]
SCENARIOS: Final[tuple[str, ...]] = get_args(Scenario)

# --- wire structs (what the fake sends) -----------------------------------------------------------


class _TradeOut(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    side: str
    price: float
    qty: float
    ord_type: str
    trade_id: int
    timestamp: str


class _TickerOut(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    last: float
    volume: float
    vwap: float
    low: float
    high: float
    change: float
    change_pct: float
    timestamp: str


class _DataFrame(msgspec.Struct, frozen=True):
    channel: str
    type: str
    data: Sequence[Any]


class _StatusOut(msgspec.Struct, frozen=True):
    api_version: str
    connection_id: int
    system: str
    version: str


class _Result(msgspec.Struct, frozen=True, omit_defaults=True):
    channel: str
    symbol: str
    snapshot: bool | None = None


class _Response(msgspec.Struct, frozen=True, omit_defaults=True):
    method: str
    time_in: str
    time_out: str
    result: _Result | None = None
    success: bool | None = None
    error: str | None = None
    symbol: str | None = None
    req_id: int | None = None


# --- what clients send ----------------------------------------------------------------------------


class _Params(msgspec.Struct, frozen=True):
    channel: str
    symbol: list[str] = msgspec.field(default_factory=list)
    snapshot: bool = True  # the ticker docs' default; the two references disagree for trade


class _Request(msgspec.Struct, frozen=True):
    method: str
    params: _Params | None = None
    req_id: int | None = None


_encode = msgspec.json.Encoder().encode
_decode_request = msgspec.json.Decoder(_Request).decode
_HEARTBEAT: Final = _encode({"channel": "heartbeat"})


# --- state ----------------------------------------------------------------------------------------


@dataclass
class _Spike:
    started: float  # monotonic
    over_s: float
    from_price: float
    to_price: float


@dataclass
class _Market:
    """One pair's book: price, 24 h statistics, the trade id sequence and the last 50 trades."""

    pair: str
    start_price: float
    price: float
    decimals: int
    next_trade_id: int
    volume: float
    notional: float
    low: float
    high: float
    recent: deque[_TradeOut] = field(default_factory=lambda: deque(maxlen=SNAPSHOT_TRADES))
    spike: _Spike | None = None


@dataclass(eq=False)  # identity hashing: one per connection, kept in a set
class _Client:
    connection: ServerConnection
    last_sent: float
    subscriptions: set[tuple[str, str]] = field(default_factory=set)


def _decimals(price: float) -> int:
    # About five significant digits, as Kraken quotes: 65000.1, 3200.12, 0.55123.
    return max(1, min(8, 4 - math.floor(math.log10(price))))


class FakeKraken:
    """A Kraken WebSocket v2 server on loopback with a synthetic market and scriptable faults.

    ``async with FakeKraken(seed=1) as kraken: connect(kraken.url)``. All fault methods may be
    called while it runs, from the same event loop.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pairs: Iterable[str] = DEFAULT_PAIRS,
        trades_per_second: float = 5.0,
        ticker_interval_s: float = 1.0,
        heartbeat_interval_s: float = 1.0,
        seed: int | None = None,
        start_prices: dict[str, float] | None = None,
        volatility: float = DEFAULT_VOLATILITY,
        first_trade_id: int | None = None,
    ) -> None:
        if trades_per_second < 0:
            raise ValueError(f"trades_per_second must be >= 0, got {trades_per_second}")
        if ticker_interval_s <= 0 or heartbeat_interval_s <= 0:
            raise ValueError("ticker_interval_s and heartbeat_interval_s must be > 0")
        self._host = host
        self._port = port
        self.trades_per_second = trades_per_second
        self.ticker_interval_s = ticker_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.volatility = volatility
        self._rng = random.Random(seed)  # noqa: S311 - a simulated market, not a secret
        prices = {normalise_pair(k): v for k, v in (start_prices or {}).items()}
        # A fresh run's ids start above anything an earlier run can have handed out (far below
        # 1000 trades a second per pair), unless a test asks for a fixed start.
        first_id = int(time.time() * 1000) if first_trade_id is None else first_trade_id
        self._markets: dict[str, _Market] = {}
        for pair in dict.fromkeys(normalise_pair(p) for p in pairs):
            price = prices.get(pair, DEFAULT_START_PRICES.get(pair, FALLBACK_START_PRICE))
            if not price > 0:
                raise ValueError(f"start price of {pair} must be > 0, got {price}")
            self._markets[pair] = self._new_market(pair, price, first_id)
        if not self._markets:
            raise ValueError("a fake Kraken needs at least one pair")
        self._system = "online"
        self._stalled_until = 0.0
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._clock: asyncio.Task[None] | None = None
        self._tick_s = max(0.005, min(0.05, heartbeat_interval_s / 4, ticker_interval_s / 4))
        self.connections_total = 0
        self.failure: BaseException | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._serve_connection,
            self._host,
            self._port,
            process_request=self._check_path,
            # No server-initiated keepalive pings: during a stall() nothing at all goes out. A
            # client's own protocol pings are still answered (by websockets), as they would be
            # by a Kraken whose TCP is alive but whose feed went silent.
            ping_interval=None,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._clock = asyncio.create_task(self._run_market(), name="fake-kraken-market")
        self._clock.add_done_callback(self._market_stopped)

    async def stop(self) -> None:
        """Close every connection (1001, going away) and stop listening. Safe to call twice."""
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self._port}{PATH}"

    @property
    def pairs(self) -> tuple[str, ...]:
        return tuple(self._markets)

    @property
    def system(self) -> str:
        return self._system

    def price(self, pair: str) -> float:
        """The last trade price of ``pair``."""
        return self._market(pair).price

    def last_trade_id(self, pair: str) -> int:
        return self._market(pair).next_trade_id - 1

    # --- faults -----------------------------------------------------------------------------------

    def spike(self, pair: str, pct: float, over_s: float) -> None:
        """Move ``pair`` by ``pct`` percent (geometrically) within ``over_s`` seconds, as trades."""
        market = self._market(pair)
        if not pct > -100:
            raise ValueError(f"a price cannot fall by {pct}%")
        target = market.price * (1 + pct / 100)
        market.spike = _Spike(time.monotonic(), max(over_s, 0.0), market.price, target)

    async def disconnect(self, code: int = 1001, reason: str = "") -> None:
        """Close every open connection with ``code`` (and wait for the closing handshakes)."""
        clients = list(self._clients)
        await asyncio.gather(
            *(client.connection.close(code, reason) for client in clients),
            return_exceptions=True,
        )

    def stall(self, seconds: float) -> None:
        """Keep connections open but send nothing for ``seconds``: no data, no heartbeat, no reply.

        The market goes on meanwhile, so a subscriber that waits it out sees a trade id gap.
        """
        self._stalled_until = max(self._stalled_until, time.monotonic() + seconds)

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self._stalled_until

    def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as is to every connection: ``str`` as a text frame, ``bytes`` as binary.

        An explicit act, so it is sent even during a stall.
        """
        broadcast([client.connection for client in self._clients], frame)

    def set_status(self, system: str) -> None:
        """Change the engine state and tell every connection, as Kraken does.

        Trading (trades and ticker updates) only runs while ``online``.
        """
        if system not in SYSTEM_STATES:
            raise ValueError(f"system must be one of {', '.join(sorted(SYSTEM_STATES))}")
        self._system = system
        for client in list(self._clients):
            self._send(client, self._status_frame())

    # --- connections ------------------------------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        # A client pointed at v1's URL would otherwise get v2 frames it cannot read.
        if request.path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"Kraken v2 is served on {PATH}\n")
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        self.connections_total += 1
        client = _Client(connection, last_sent=time.monotonic())
        self._clients.add(client)
        try:
            self._send(client, self._status_frame())
            async for message in connection:
                self._handle_request(client, message)
        except ConnectionClosed:
            pass  # the client went away, cleanly or not: nothing to clean up but the set
        finally:
            self._clients.discard(client)

    def _send(self, client: _Client, frame: bytes) -> None:
        # broadcast() writes synchronously: an ack, its snapshot and the subscription happen with
        # no await in between, so no update can slip between a snapshot and the next update.
        if self.stalled:
            return
        broadcast([client.connection], frame, text=True)
        client.last_sent = time.monotonic()

    def _status_frame(self) -> bytes:
        status = _StatusOut(API_VERSION, self._rng.getrandbits(64), self._system, SERVICE_VERSION)
        return _encode(_DataFrame("status", "update", [status]))

    def _handle_request(self, client: _Client, message: str | bytes) -> None:
        time_in = format_rfc3339(time.time())
        try:
            request = _decode_request(message)
        except msgspec.DecodeError as exc:
            self._reply(client, _Response("error", time_in, "", success=False, error=str(exc)))
            return
        if request.method == "ping":
            self._reply(client, _Response("pong", time_in, "", req_id=request.req_id))
        elif request.method in ("subscribe", "unsubscribe"):
            self._handle_subscription(client, request, time_in)
        else:
            error = f"Method not supported: {request.method[:40]}"
            response = _Response(request.method[:40], time_in, "", success=False, error=error)
            self._reply(client, msgspec.structs.replace(response, req_id=request.req_id))

    def _reply(self, client: _Client, response: _Response) -> None:
        stamped = msgspec.structs.replace(response, time_out=format_rfc3339(time.time()))
        self._send(client, _encode(stamped))

    def _handle_subscription(self, client: _Client, request: _Request, time_in: str) -> None:
        method, params, req_id = request.method, request.params, request.req_id
        if params is None or params.channel not in ("ticker", "trade") or not params.symbol:
            channel = params.channel if params is not None else None
            invalid = f"Invalid or missing channel/symbol (channel {channel!r})"
            self._reply(client, _Response(method, time_in, "", None, False, invalid, req_id=req_id))
            return
        for symbol in params.symbol:
            key = (params.channel, symbol)
            error: str | None = None
            if symbol not in self._markets:
                error = f"Currency pair not supported {symbol}"
            elif method == "subscribe" and key in client.subscriptions:
                error = "Already subscribed"
            elif method == "unsubscribe" and key not in client.subscriptions:
                error = "Subscription Not Found"
            if error is not None:
                refusal = _Response(method, time_in, "", None, False, error, symbol, req_id)
                self._reply(client, refusal)
                continue
            snapshot = params.snapshot if method == "subscribe" else None
            result = _Result(params.channel, symbol, snapshot)
            self._reply(client, _Response(method, time_in, "", result, True, req_id=req_id))
            if method == "unsubscribe":
                client.subscriptions.discard(key)
                continue
            if params.snapshot:
                self._send(client, self._snapshot(params.channel, symbol))
            client.subscriptions.add(key)

    def _snapshot(self, channel: str, pair: str) -> bytes:
        market = self._markets[pair]
        if channel == "ticker":
            return _encode(_DataFrame("ticker", "snapshot", [self._ticker(market, time.time())]))
        return _encode(_DataFrame("trade", "snapshot", list(market.recent)))

    # --- the market -------------------------------------------------------------------------------

    def _market(self, pair: str) -> _Market:
        normal = normalise_pair(pair)
        market = self._markets.get(normal)
        if market is None:
            raise ValueError(f"{pair!r} is not a pair of this fake; it has {', '.join(self.pairs)}")
        return market

    def _new_market(self, pair: str, price: float, first_id: int) -> _Market:
        # A day's worth of plausible volume, and a full snapshot's worth of history, so that a
        # client connecting at once already sees a 50-trade snapshot and a non-zero 24 h volume.
        volume = 20_000_000.0 / price * self._rng.uniform(0.5, 1.5)
        market = _Market(
            pair=pair,
            start_price=price,
            price=price,
            decimals=_decimals(price),
            next_trade_id=first_id,
            volume=volume,
            notional=volume * price,
            low=price,
            high=price,
        )
        now = time.time()
        for age in range(SNAPSHOT_TRADES, 0, -1):
            self._trade(market, now - age, time.monotonic())
        return market

    def _next_price(self, market: _Market, now: float) -> float:
        spike = market.spike
        if spike is not None:
            done = 1.0 if spike.over_s <= 0 else min(1.0, (now - spike.started) / spike.over_s)
            if done >= 1.0:
                market.spike = None
                return spike.to_price
            path = spike.from_price * (spike.to_price / spike.from_price) ** done
            return float(path * math.exp(self._rng.gauss(0.0, self.volatility / 4)))
        drift = -_MEAN_REVERSION * math.log(market.price / market.start_price)
        return market.price * math.exp(drift + self._rng.gauss(0.0, self.volatility))

    def _trade(self, market: _Market, wall: float, now: float) -> _TradeOut:
        step = 10.0**-market.decimals
        price = max(round(self._next_price(market, now), market.decimals), step)
        # Takers lean with a spike: buyers push it up, sellers down.
        rising = market.spike is not None and market.spike.to_price > market.spike.from_price
        falling = market.spike is not None and not rising
        buy_odds = 0.8 if rising else 0.2 if falling else 0.5
        qty = round(_TRADE_NOTIONAL / price * self._rng.lognormvariate(0.0, 1.0), 8) or 1e-8
        trade = _TradeOut(
            symbol=market.pair,
            side="buy" if self._rng.random() < buy_odds else "sell",
            price=price,
            qty=qty,
            ord_type="market" if self._rng.random() < 0.3 else "limit",
            trade_id=market.next_trade_id,
            timestamp=format_rfc3339(wall),
        )
        market.next_trade_id += 1
        market.price = price
        market.volume += qty
        market.notional += qty * price
        market.low = min(market.low, price)
        market.high = max(market.high, price)
        market.recent.append(trade)
        return trade

    def _trade_count(self, market: _Market, dt: float) -> int:
        # Poisson arrivals (Knuth: the rate per tick is small); a spike trades every tick so that
        # its path shows in the trade stream whatever the configured rate.
        rate = self.trades_per_second * dt
        count, product, floor = 0, self._rng.random(), math.exp(-rate)
        while product > floor:
            count += 1
            product *= self._rng.random()
        return max(count, 1) if market.spike is not None else count

    def _ticker(self, market: _Market, wall: float) -> _TickerOut:
        half = market.price * _SPREAD / 2
        step = 10.0**-market.decimals
        bid = max(round(market.price - half, market.decimals), step)
        ask = max(round(market.price + half, market.decimals), bid + step)
        return _TickerOut(
            symbol=market.pair,
            bid=bid,
            bid_qty=round(self._rng.uniform(0.1, 5.0) * _TRADE_NOTIONAL / bid, 8),
            ask=ask,
            ask_qty=round(self._rng.uniform(0.1, 5.0) * _TRADE_NOTIONAL / ask, 8),
            last=market.price,
            volume=round(market.volume, 8),
            vwap=round(market.notional / market.volume, market.decimals),
            low=market.low,
            high=market.high,
            change=round(market.price - market.start_price, market.decimals),
            change_pct=round(100 * (market.price / market.start_price - 1), 2),
            timestamp=format_rfc3339(wall),
        )

    async def _run_market(self) -> None:
        last = time.monotonic()
        next_ticker = last + self.ticker_interval_s
        while True:
            await asyncio.sleep(self._tick_s)
            now, wall = time.monotonic(), time.time()
            dt, last = now - last, now
            if self._system == "online":
                self._emit_trades(dt, now, wall)
                if now >= next_ticker:
                    next_ticker += self.ticker_interval_s
                    if next_ticker < now:
                        # Behind after a long pause (a debugger, a loaded CI box): no burst.
                        next_ticker = now + self.ticker_interval_s
                    self._emit_tickers(wall)
            self._emit_heartbeats(now)

    def _subscribers(self, channel: str, pair: str) -> list[_Client]:
        key = (channel, pair)
        return [client for client in self._clients if key in client.subscriptions]

    def _emit_trades(self, dt: float, now: float, wall: float) -> None:
        for market in self._markets.values():
            count = self._trade_count(market, dt)
            if not count:
                continue
            # Distinct microseconds keep the batch in order, as Kraken's batches are.
            trades = [self._trade(market, wall + i * 1e-6, now) for i in range(count)]
            subscribers = self._subscribers("trade", market.pair)
            if subscribers:
                frame = _encode(_DataFrame("trade", "update", trades))
                for client in subscribers:
                    self._send(client, frame)

    def _emit_tickers(self, wall: float) -> None:
        for market in self._markets.values():
            subscribers = self._subscribers("ticker", market.pair)
            if subscribers:
                frame = _encode(_DataFrame("ticker", "update", [self._ticker(market, wall)]))
                for client in subscribers:
                    self._send(client, frame)

    def _emit_heartbeats(self, now: float) -> None:
        for client in list(self._clients):
            # Kraken: heartbeats start "on subscription to any channel".
            idle = now - client.last_sent >= self.heartbeat_interval_s
            if client.subscriptions and idle:
                self._send(client, _HEARTBEAT)

    def _market_stopped(self, task: asyncio.Task[None]) -> None:
        # A dead market must not look like a quiet one: record why, and drop every client with
        # 1011 (internal error) so that tests and demos fail loudly instead of waiting.
        if task.cancelled() or task.exception() is None:
            return
        self.failure = task.exception()
        log.error("fake Kraken market stopped", exc_info=self.failure)
        for client in list(self._clients):
            closing = task.get_loop().create_task(client.connection.close(1011, "market stopped"))
            self._closing.add(closing)  # a reference, or the task may be collected mid-close
            closing.add_done_callback(self._closing.discard)


# --- scenarios and the CLI ------------------------------------------------------------------------


def malformed_frames(pair: str) -> tuple[str, ...]:
    """The frames the ``malformed`` scenario cycles through, one per fault."""
    bad_trade = {
        "symbol": pair,
        "side": "buy",
        "price": -1,
        "qty": 0.1,
        "ord_type": "limit",
        "trade_id": 1,
        "timestamp": "2023-09-25T07:49:37.708706Z",
    }
    return (
        '{"channel":"trade","type":"update","data":[{"symbol":"' + pair + '"',  # truncated
        "this is not JSON",
        '{"channel":"bogus","type":"update","data":[]}',
        '{"channel":"ticker","type":"update","data":[{"symbol":"' + pair + '","bid":"x"}]}',
        _encode(_DataFrame("trade", "update", [bad_trade])).decode(),
    )


@dataclass(frozen=True)
class FaultPlan:
    """When and how the CLI's scenario misbehaves: first after ``first_after_s``, then every
    ``every_s`` seconds."""

    scenario: Scenario = "calm"
    first_after_s: float = 5.0
    every_s: float = 30.0
    spike_pct: float = 5.0
    spike_over_s: float = 10.0
    stall_s: float = 15.0
    close_code: int = 1001


async def _perform(
    fake: FakeKraken, plan: FaultPlan, n: int, stop: asyncio.Event, say: Callable[[str], None]
) -> None:
    pair = fake.pairs[n % len(fake.pairs)]
    if plan.scenario == "spike":
        pct = plan.spike_pct if n % 2 == 0 else -plan.spike_pct
        say(f"fault: spike {pair} {pct:+.2f}% over {plan.spike_over_s:g}s")
        fake.spike(pair, pct, plan.spike_over_s)
    elif plan.scenario == "disconnect":
        say(f"fault: disconnect every connection with code {plan.close_code}")
        await fake.disconnect(plan.close_code, "fake Kraken scenario")
    elif plan.scenario == "stall":
        say(f"fault: stall every connection for {plan.stall_s:g}s")
        fake.stall(plan.stall_s)
    elif plan.scenario == "malformed":
        frames = malformed_frames(fake.pairs[0])
        frame = frames[n % len(frames)]
        say(f"fault: send malformed frame {frame[:60]!r}")
        fake.send_raw(frame)
    elif plan.scenario == "maintenance":
        say(f"fault: status maintenance for {plan.stall_s:g}s")
        fake.set_status("maintenance")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), plan.stall_s)
        fake.set_status("online")
        say("fault over: status online")


def _say(line: str) -> None:
    print(line, flush=True)


async def serve_forever(
    fake: FakeKraken,
    plan: FaultPlan | None = None,
    *,
    stop: asyncio.Event | None = None,
    say: Callable[[str], None] = _say,
) -> None:
    """Run ``fake`` and its fault scenario until ``stop`` is set; say the URL once listening."""
    plan = plan or FaultPlan()
    stop = stop or asyncio.Event()
    async with fake:
        say(f"fake Kraken WebSocket v2 listening on {fake.url}")
        if plan.scenario == "calm":
            await stop.wait()
            return
        delay = plan.first_after_s
        for n in itertools.count():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            await _perform(fake, plan, n, stop, say)
            delay = plan.every_s


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _pair_list(text: str) -> list[str]:
    try:
        return [normalise_pair(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "fake-kraken",
        description="A fake Kraken WebSocket v2 server for tests and offline demos: a random-walk"
        " market per pair, ticker and trade channels, heartbeats, ping, and scripted faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (%(default)s)"
    )
    parser.add_argument(
        "--pairs",
        type=_pair_list,
        default=list(DEFAULT_PAIRS),
        help=f"comma-separated BASE/QUOTE pairs, XBT/XDG accepted ({','.join(DEFAULT_PAIRS)})",
    )
    parser.add_argument(
        "--trades-per-second", type=float, default=5.0, help="per pair, on average (%(default)s)"
    )
    parser.add_argument(
        "--ticker-interval", type=_positive_float, default=1.0, help="seconds (%(default)s)"
    )
    parser.add_argument(
        "--heartbeat-interval", type=_positive_float, default=1.0, help="seconds (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random walk")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="calm",
        help="fault to perform periodically (%(default)s: none)",
    )
    parser.add_argument(
        "--fault-after",
        type=float,
        default=5.0,
        help="seconds before the first fault (%(default)s)",
    )
    parser.add_argument(
        "--fault-every",
        type=_positive_float,
        default=30.0,
        help="seconds between faults (%(default)s)",
    )
    parser.add_argument("--spike-pct", type=float, default=5.0, help="spike size, %% (%(default)s)")
    parser.add_argument(
        "--spike-over", type=float, default=10.0, help="spike duration, seconds (%(default)s)"
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=15.0,
        help="stall and maintenance duration, seconds (%(default)s)",
    )
    parser.add_argument(
        "--close-code", type=int, default=1001, help="disconnect's close code (%(default)s)"
    )
    return parser


async def _serve_until_signalled(fake: FakeKraken, plan: FaultPlan) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve_forever(fake, plan, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """CLI entry point; returns 0 after SIGINT/SIGTERM, 1 if it cannot listen, 2 on bad usage."""
    args = build_parser(prog).parse_args(argv)
    try:
        fake = FakeKraken(
            host=args.host,
            port=args.port,
            pairs=args.pairs,
            trades_per_second=args.trades_per_second,
            ticker_interval_s=args.ticker_interval,
            heartbeat_interval_s=args.heartbeat_interval,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"fake-kraken: {exc}", file=sys.stderr)
        return 2
    plan = FaultPlan(
        scenario=args.scenario,
        first_after_s=args.fault_after,
        every_s=args.fault_every,
        spike_pct=args.spike_pct,
        spike_over_s=args.spike_over,
        stall_s=args.stall_seconds,
        close_code=args.close_code,
    )
    try:
        asyncio.run(_serve_until_signalled(fake, plan))
    except OSError as exc:
        print(f"fake-kraken: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
