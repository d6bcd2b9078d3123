"""The Kraken WebSocket v2 session: connect, subscribe, read, and reconnect forever.

One :class:`KrakenFeed` keeps one connection alive for the daemon's lifetime:

- every session subscribes ``ticker`` and ``trade`` for the configured pairs and checks each
  symbol's acknowledgement; a rejected symbol is logged and counted, the others go on;
- a silence watchdog replaces a connection that is open but quiet (Kraken sometimes acks and then
  sends nothing): subscribed connections get a heartbeat every second, so
  ``CRYPTOVIZ_KRAKEN_SILENCE_TIMEOUT_S`` of nothing means the connection is dead;
- reconnects wait a capped exponential backoff with full jitter; the attempt counter resets once a
  session has been subscribed, so a daily 1001 "going away" costs half a second, not thirty;
- ``status`` messages (maintenance, cancel_only) are logged and reflected in readiness.

Frames are handed to a :class:`FrameHandler` (the producer service) as parsed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Final, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from services.kraken.protocol import (
    Heartbeat,
    Pong,
    ProtocolError,
    Status,
    SubscriptionAck,
    TickerMessage,
    TickerRow,
    TradeMessage,
    TradeRow,
    parse_frame,
    subscribe,
)
from services.kraken.settings import KrakenSettings
from shared.backoff import full_jitter_backoff

log = structlog.get_logger(__name__)

CHANNELS: Final = ("ticker", "trade")
# Close codes worth their own label; anything else is "close_other" (labels stay bounded).
_KNOWN_CLOSE_CODES: Final = frozenset({1000, 1001, 1006, 1008, 1011, 1012, 1013})
WATCHDOG_TICK_S: Final = 0.5


class FrameHandler(Protocol):
    async def on_tickers(self, rows: list[TickerRow], received_at: float) -> None: ...

    async def on_trades(self, rows: list[TradeRow], received_at: float) -> None: ...

    def on_invalid(self, error: ProtocolError) -> None: ...


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "cryptoviz_kraken_messages_received",
            "WebSocket frames received, by channel (or method for responses).",
            ["channel"],
            registry=registry,
        )
        self.reconnects = Counter(
            "cryptoviz_kraken_reconnects",
            "Sessions that ended and were replaced, by reason.",
            ["reason"],
            registry=registry,
        )
        self.subscribed = Gauge(
            "cryptoviz_kraken_subscribed_symbols",
            "Symbols acknowledged on the current connection, by channel.",
            ["channel"],
            registry=registry,
        )
        self.subscribe_errors = Counter(
            "cryptoviz_kraken_subscribe_errors",
            "Symbols Kraken refused to subscribe, by channel.",
            ["channel"],
            registry=registry,
        )
        self.connected = Gauge(
            "cryptoviz_kraken_connected",
            "1 while a WebSocket connection to Kraken is open.",
            registry=registry,
        )
        self.exchange_online = Gauge(
            "cryptoviz_kraken_exchange_online",
            "1 while Kraken's last status message said the engine is online.",
            registry=registry,
        )
        self.last_frame = Gauge(
            "cryptoviz_kraken_last_frame_timestamp_seconds",
            "When the last frame of any kind arrived, Unix seconds.",
            registry=registry,
        )


class KrakenFeed:
    def __init__(
        self, settings: KrakenSettings, registry: CollectorRegistry, handler: FrameHandler
    ) -> None:
        self._settings = settings
        self._handler = handler
        self.metrics = FeedMetrics(registry)
        # The per-frame counters, looked up once: labels() takes a lock on every call.
        self._received_trade = self.metrics.received.labels("trade")
        self._received_ticker = self.metrics.received.labels("ticker")
        self.pairs = settings.kraken_pairs
        self.system: str | None = None
        self.subscribed: dict[str, set[str]] = {channel: set() for channel in CHANNELS}
        self._ws: ClientConnection | None = None
        self._req_ids = itertools.count(1)
        self._last_frame_at = 0.0
        self._silenced = False
        # Error acks may omit the channel; the request id says which subscription failed.
        self._requests: dict[int, str] = {}

    # -- state for readiness --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def fully_subscribed(self) -> bool:
        """Connected, with at least one symbol acknowledged on each channel."""
        return self.connected and all(self.subscribed[channel] for channel in CHANNELS)

    def exchange_online(self) -> bool:
        # No status yet counts as online: Kraken sends one on connect, and one lost in transit
        # must not keep a connection that delivers data from being ready.
        return self.system in (None, "online")

    # -- the session loop -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        attempt = 0
        while not stopping.is_set():
            started = time.monotonic()
            reason, was_subscribed = await self._session(stopping)
            if stopping.is_set():
                break
            self.metrics.reconnects.labels(reason).inc()
            if was_subscribed:
                attempt = 0
            delay = full_jitter_backoff(
                attempt, cap_s=self._settings.kraken_reconnect_max_s, base_s=0.5
            )
            attempt += 1
            log_method = log.info if reason in ("close_1000", "close_1001") else log.warning
            log_method(
                "kraken session ended, reconnecting",
                reason=reason,
                session_s=round(time.monotonic() - started, 1),
                attempt=attempt,
                retry_in_s=round(delay, 2),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def _session(self, stopping: asyncio.Event) -> tuple[str, bool]:
        """One connection, from connect to close; returns (reason it ended, was subscribed)."""
        try:
            ws = await asyncio.wait_for(
                connect(
                    self._settings.kraken_url,
                    max_size=self._settings.kraken_max_frame_bytes,
                    open_timeout=None,  # bounded by wait_for, which also covers DNS
                    close_timeout=2,
                    # Kraken answers protocol pings; our own silence watchdog covers the rest.
                    ping_interval=20,
                    ping_timeout=20,
                ),
                self._settings.kraken_connect_timeout_s,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            log.warning("cannot connect to kraken", url=self._settings.kraken_url, error=str(exc))
            return "connect_failed", False
        self._ws = ws
        self._silenced = False
        self.metrics.connected.set(1)
        self._last_frame_at = time.monotonic()
        watchdog = asyncio.create_task(self._watch(ws, stopping))
        was_subscribed = False
        try:
            for channel in CHANNELS:
                req_id = next(self._req_ids)
                self._requests[req_id] = channel
                await ws.send(subscribe(channel, list(self.pairs), req_id))
            async for raw in ws:
                self._last_frame_at = time.monotonic()
                await self._dispatch(raw)
                was_subscribed = was_subscribed or self.fully_subscribed()
        except ConnectionClosed:
            pass  # the close code says why, below
        finally:
            watchdog.cancel()
            self._ws = None
            self.metrics.connected.set(0)
            for channel, symbols in self.subscribed.items():
                symbols.clear()
                self.metrics.subscribed.labels(channel).set(0)
            await ws.close()
        # A connection the watchdog closed for silence ends with our own 1000: say why instead.
        return ("silent" if self._silenced else self._close_reason(ws)), was_subscribed

    def _close_reason(self, ws: ClientConnection) -> str:
        code = ws.close_code
        if code is None:
            return "close_other"
        return f"close_{code}" if code in _KNOWN_CLOSE_CODES else "close_other"

    async def _watch(self, ws: ClientConnection, stopping: asyncio.Event) -> None:
        """Close ``ws`` on stop, or after too long a silence (and say so in ``_silenced``)."""
        timeout = self._settings.kraken_silence_timeout_s
        while True:
            if stopping.is_set():
                await ws.close(1000, "stopping")
                return
            silent_for = time.monotonic() - self._last_frame_at
            if silent_for > timeout:
                log.warning("kraken connection silent, replacing it", silent_s=round(silent_for, 1))
                self._silenced = True
                await ws.close(1000, "silent")
                return
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({stop}, timeout=WATCHDOG_TICK_S)
            finally:
                stop.cancel()

    async def _dispatch(self, raw: str | bytes) -> None:
        received_at = time.time()
        self.metrics.last_frame.set(received_at)
        try:
            frame = parse_frame(raw, max_bytes=self._settings.kraken_max_frame_bytes)
        except ProtocolError as error:
            self.metrics.received.labels("invalid").inc()
            self._handler.on_invalid(error)
            return
        if isinstance(frame, TradeMessage):
            self._received_trade.inc()
            self._data_proves_subscription("trade", frame.data)
            await self._handler.on_trades(frame.data, received_at)
        elif isinstance(frame, TickerMessage):
            self._received_ticker.inc()
            self._data_proves_subscription("ticker", frame.data)
            await self._handler.on_tickers(frame.data, received_at)
        elif isinstance(frame, Heartbeat):
            self.metrics.received.labels("heartbeat").inc()
        elif isinstance(frame, Status):
            self.metrics.received.labels("status").inc()
            self._on_status(frame)
        elif isinstance(frame, SubscriptionAck):
            self.metrics.received.labels(frame.method).inc()
            self._on_ack(frame)
        elif isinstance(frame, Pong):
            self.metrics.received.labels("pong").inc()

    def _data_proves_subscription(
        self, channel: str, rows: list[TradeRow] | list[TickerRow]
    ) -> None:
        # An acknowledgement can be lost (seen when a connection stalls right after subscribing);
        # data for a symbol proves its subscription all the same.
        if rows and rows[0].symbol not in self.subscribed[channel]:
            self._subscribed(channel, rows[0].symbol)

    def _subscribed(self, channel: str, symbol: str) -> None:
        symbols = self.subscribed[channel]
        symbols.add(symbol)
        self.metrics.subscribed.labels(channel).set(len(symbols))
        if len(symbols) == len(self.pairs):
            log.info("kraken subscribed", channel=channel, symbols=len(self.pairs))

    def _on_status(self, status: Status) -> None:
        if status.system != self.system:
            method = log.info if status.online else log.warning
            method("kraken status", system=status.system, api_version=status.api_version)
        self.system = status.system
        self.metrics.exchange_online.set(1 if status.online else 0)

    def _on_ack(self, ack: SubscriptionAck) -> None:
        channel = ack.channel or self._requests.get(ack.req_id or 0, "unknown")
        if ack.method != "subscribe":
            return
        if not ack.success:
            self.metrics.subscribe_errors.labels(channel).inc()
            log.warning(
                "kraken refused a subscription", channel=channel, symbol=ack.symbol, error=ack.error
            )
            return
        if channel in self.subscribed and ack.symbol and ack.symbol not in self.subscribed[channel]:
            self._subscribed(channel, ack.symbol)
