"""Kraken WebSocket v2: the frames the producer reads, the requests it sends, and their conversion
into the ``rawticker`` / ``rawtrade`` payloads.

What the protocol is (Kraken's documentation, read for this module)
--------------------------------------------------------------------
Endpoint ``wss://ws.kraken.com/v2``; every message is one JSON object; times are RFC 3339 strings
(``2023-09-25T07:49:37.708706Z``); v2 symbols are ``BASE/QUOTE`` with ``BTC`` and ``DOGE``, and
v1's ``XBT/USD`` / ``XDG/USD`` are refused.
(https://docs.kraken.com/exchange/api-reference/spot-websocket,
https://docs.kraken.com/api/docs/guides/spot-ws-intro/)

Data frames carry ``channel``; responses to requests carry ``method``:

* ``status`` (https://docs.kraken.com/api/docs/websocket-v2/status): sent on connect and whenever
  the engine's state changes, never on request::

      {"channel": "status", "type": "update", "data": [{"api_version": "v2",
       "connection_id": 13834774380200032777, "system": "online", "version": "2.0.0"}]}

  ``system`` is one of ``online``, ``maintenance``, ``cancel_only``, ``post_only``; only ``online``
  matches orders, so only ``online`` produces trades. ``connection_id`` does not fit an int64 (it is
  a uint64). Third-party recordings show extra keys (``upcoming_maintenance``, ``emergency``):
  unknown keys are ignored everywhere here.
* ``heartbeat`` (https://docs.kraken.com/api/docs/websocket-v2/heartbeat): ``{"channel":
  "heartbeat"}``, about once a second when no other channel update was sent, and only once the
  connection holds a subscription.
* ``ping`` (https://docs.kraken.com/api/docs/websocket-v2/ping): an application-level ping,
  ``{"method": "ping", "req_id": 101}`` answered by ``{"method": "pong", "req_id": 101, "time_in":
  "2023-09-24T14:10:23.799685Z", "time_out": "2023-09-24T14:10:23.799703Z"}``. The schema also lists
  ``success``, ``error`` and ``result.warnings``; the documented example has none of them, so all
  are optional here.
* ``subscribe`` (https://docs.kraken.com/api/docs/websocket-v2/ticker, .../trade): ``{"method":
  "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"], "snapshot": true}, "req_id":
  1}``. One acknowledgement comes back PER SYMBOL: ``{"method": "subscribe", "result": {"channel":
  "ticker", "symbol": "BTC/USD", "snapshot": true, "warnings": [...]}, "success": true, "time_in":
  "...", "time_out": "...", "req_id": 1}``. A refusal has ``success: false`` and ``error``; the docs
  show no refusal example; recorded refusals carry the symbol at the top level and no ``result``:
  ``{"error": "Currency pair not supported XBT/USD", "method": "subscribe", "success": false,
  "symbol": "XBT/USD", "time_in": "...", "time_out": "..."}``. ``unsubscribe`` mirrors it.
  The docs disagree on the trade channel's ``snapshot`` default (``true`` in the docs.kraken.com/api
  reference, ``false`` in the newer docs.kraken.com/exchange one, seen through the mirror above),
  so :func:`subscribe` always sends it.
* ``ticker`` (https://docs.kraken.com/api/docs/websocket-v2/ticker): ``{"channel": "ticker",
  "type": "snapshot"|"update", "data": [{"symbol", "bid", "bid_qty", "ask", "ask_qty", "last",
  "volume", "vwap", "low", "high", "change", "change_pct"}]}``; ``volume`` is the 24 h volume in the
  base currency and ``change_pct`` the 24 h change in percent; ``last`` is "only guaranteed if
  traded within the past 24 hours". ``timestamp``: the older reference's schema has no such field;
  the newer reference (https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/ticker,
  read through its mirror https://kraken-sandbox.mintlify.app/exchange/api-reference/
  spot-websocket-v2/ticker) lists an RFC 3339 ``timestamp`` and its example carries
  ``"timestamp": "2023-09-25T09:04:31.742648Z"``; third-party recordings of the live feed have it
  too (and an undocumented ``trades`` count). So it is optional here: :func:`ticker_payload` uses
  it when present and the receive time otherwise.
* ``trade`` (https://docs.kraken.com/api/docs/websocket-v2/trade): ``{"channel": "trade", "type":
  "snapshot"|"update", "data": [{"symbol": "MATIC/USD", "side": "buy", "price": 0.5147, "qty":
  6423.46326, "ord_type": "limit", "trade_id": 4665846, "timestamp":
  "2023-09-25T07:48:36.925533Z"}]}``. ``side`` is the taker's; ``trade_id`` is "a sequence number,
  unique per book"; the snapshot is the most recent 50 trades, so after a reconnect it overlaps
  what was already received and a consumer dedupes by ``trade_id``. Several trades may share one
  update message.

Why one envelope decode plus a typed decode of ``data``: Kraken tags data frames with ``channel``
and responses with ``method``, so no single msgspec tagged union fits; decoding the envelope with
``data`` kept as :class:`msgspec.Raw` (a slice of the input, no objects built) and then ``data``
with the channel's own decoder keeps every frame at two C-level passes and a few string
comparisons of Python dispatch.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar

import msgspec

from shared.envelope import RawTicker, RawTrade

# websockets' own default max_size; a trade snapshot (50 rows) is about 8 KiB.
DEFAULT_MAX_FRAME_BYTES: Final = 1_048_576

SYSTEM_STATES: Final = frozenset({"online", "maintenance", "cancel_only", "post_only"})
SNAPSHOT_TRADES: Final = 50

ErrorKind = Literal["malformed_json", "unknown_channel", "invalid", "too_large"]
Channel = Literal["ticker", "trade"]


class ProtocolError(ValueError):
    """A frame or row the producer cannot use.

    ``kind`` is a short, bounded label (metric labels, dead-letter rows): ``malformed_json``,
    ``unknown_channel``, ``invalid`` or ``too_large``; ``reason`` says what exactly.
    """

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        self.kind: ErrorKind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


# --- inbound frames -------------------------------------------------------------------------------
# gc=False: these frozen structs hold only scalars, strings, tuples and lists of rows, so none can
# be part of a reference cycle, and skipping GC tracking makes building thousands of them a second
# measurably cheaper.


class TickerRow(msgspec.Struct, frozen=True, gc=False):
    """One ``ticker`` data row; the fields the producer does not use are optional."""

    symbol: str
    bid: float
    ask: float
    volume: float
    change_pct: float
    last: float | None = None
    bid_qty: float | None = None
    ask_qty: float | None = None
    vwap: float | None = None
    low: float | None = None
    high: float | None = None
    change: float | None = None
    timestamp: str | None = None


class TradeRow(msgspec.Struct, frozen=True, gc=False):
    """One ``trade`` data row. ``side`` stays a string: a bad side spoils its row, not the batch."""

    symbol: str
    side: str
    price: float
    qty: float
    trade_id: int
    timestamp: str
    ord_type: str | None = None


class Status(msgspec.Struct, frozen=True, gc=False):
    """The engine's state, sent on connect and on every change."""

    system: str
    api_version: str | None = None
    connection_id: int | None = None
    version: str | None = None

    @property
    def online(self) -> bool:
        return self.system == "online"


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """Sent when a subscribed connection had nothing else to say for about a second."""


class Pong(msgspec.Struct, frozen=True, gc=False):
    req_id: int | None = None
    time_in: str | None = None
    time_out: str | None = None
    success: bool = True
    error: str | None = None
    warnings: tuple[str, ...] = ()


class SubscriptionAck(msgspec.Struct, frozen=True, gc=False):
    """One symbol's answer to a subscribe or unsubscribe request (Kraken sends one per symbol)."""

    method: Literal["subscribe", "unsubscribe"]
    success: bool
    channel: str | None = None
    symbol: str | None = None
    snapshot: bool | None = None
    error: str | None = None
    req_id: int | None = None
    time_in: str | None = None
    time_out: str | None = None
    warnings: tuple[str, ...] = ()


class TickerMessage(msgspec.Struct, frozen=True, gc=False):
    type: Literal["snapshot", "update"]
    data: list[TickerRow]


class TradeMessage(msgspec.Struct, frozen=True, gc=False):
    type: Literal["snapshot", "update"]
    data: list[TradeRow]


Frame = Status | Heartbeat | Pong | SubscriptionAck | TickerMessage | TradeMessage

MessageType = Literal["snapshot", "update"]


class _Result(msgspec.Struct, frozen=True, gc=False):
    channel: str | None = None
    symbol: str | None = None
    snapshot: bool | None = None
    warnings: tuple[str, ...] = ()


class _Envelope(msgspec.Struct, frozen=True, gc=False):
    channel: str | None = None
    method: str | None = None
    type: str | None = None
    # Raw: a slice of the input, decoded later by the channel's own decoder. Empty when absent.
    data: msgspec.Raw = msgspec.Raw()
    result: _Result | None = None
    success: bool | None = None
    error: str | None = None
    symbol: str | None = None
    req_id: int | None = None
    time_in: str | None = None
    time_out: str | None = None


_Row = TypeVar("_Row", TickerRow, TradeRow)

_envelope = msgspec.json.Decoder(_Envelope)
_ticker_rows = msgspec.json.Decoder(list[TickerRow])
_trade_rows = msgspec.json.Decoder(list[TradeRow])
_status_rows = msgspec.json.Decoder(list[Status])
_HEARTBEAT: Final = Heartbeat()


def _decode_error(exc: msgspec.DecodeError, where: str) -> ProtocolError:
    if isinstance(exc, msgspec.ValidationError):
        return ProtocolError("invalid", f"{where}: {exc}")
    return ProtocolError("malformed_json", f"{where}: {exc}")


def _rows(decoder: msgspec.json.Decoder[list[_Row]], env: _Envelope) -> list[_Row]:
    if not env.data:
        raise ProtocolError("invalid", f"{env.channel} frame without data")
    try:
        return decoder.decode(env.data)
    except msgspec.DecodeError as exc:
        # Paths are relative to data: say so, so "$[0].price" reads as "data[0].price".
        raise _decode_error(exc, f"{env.channel} data") from None


def _message_type(env: _Envelope) -> MessageType:
    if env.type == "snapshot":
        return "snapshot"
    if env.type == "update":
        return "update"
    raise ProtocolError("invalid", f"{env.channel} frame with type {env.type!r}")


def parse_frame(raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Decode one WebSocket message from Kraken v2 into a typed frame.

    Raises :class:`ProtocolError`: ``too_large`` above ``max_bytes`` (checked before decoding, so a
    hostile frame costs nothing), ``malformed_json``, ``invalid`` (wrong shape or types; the reason
    names the field), ``unknown_channel`` (a channel or method this producer never subscribes to).
    """
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"frame is {len(raw)} bytes, above {max_bytes}")
    try:
        env = _envelope.decode(raw)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, "frame") from None
    if env.channel is not None:
        return _data_frame(env.channel, env)
    if env.method is not None:
        return _response(env.method, env)
    raise ProtocolError("invalid", "frame has neither channel nor method")


def _data_frame(channel: str, env: _Envelope) -> Frame:
    # Most frequent first: trades, then tickers, then the once-a-second heartbeat.
    if channel == "trade":
        return TradeMessage(_message_type(env), _rows(_trade_rows, env))
    if channel == "ticker":
        return TickerMessage(_message_type(env), _rows(_ticker_rows, env))
    if channel == "heartbeat":
        return _HEARTBEAT
    if channel == "status":
        return _status(env)
    raise ProtocolError("unknown_channel", f"channel {channel[:40]!r}")


def _response(method: str, env: _Envelope) -> Frame:
    if method == "subscribe":
        return _ack("subscribe", env)
    if method == "unsubscribe":
        return _ack("unsubscribe", env)
    if method == "pong":
        return Pong(
            req_id=env.req_id,
            time_in=env.time_in,
            time_out=env.time_out,
            success=env.error is None if env.success is None else env.success,
            error=env.error,
            warnings=env.result.warnings if env.result is not None else (),
        )
    raise ProtocolError("unknown_channel", f"method {method[:40]!r}")


def _status(env: _Envelope) -> Status:
    if not env.data:
        raise ProtocolError("invalid", "status frame without data")
    try:
        rows = _status_rows.decode(env.data)
    except msgspec.DecodeError as exc:
        raise _decode_error(exc, "status data") from None
    if not rows:
        raise ProtocolError("invalid", "status frame with empty data")
    # The docs: "The status element is always the first and only item in the data payload."
    return rows[0]


def _ack(method: Literal["subscribe", "unsubscribe"], env: _Envelope) -> SubscriptionAck:
    result = env.result
    # success is documented but not marked required; an error message alone means a refusal.
    success = env.error is None if env.success is None else env.success
    return SubscriptionAck(
        method=method,
        success=success,
        channel=result.channel if result is not None and result.channel else env.channel,
        # Refusals carry the symbol at the top level, acceptances inside result.
        symbol=result.symbol if result is not None and result.symbol else env.symbol,
        snapshot=result.snapshot if result is not None else None,
        error=env.error,
        req_id=env.req_id,
        time_in=env.time_in,
        time_out=env.time_out,
        warnings=result.warnings if result is not None else (),
    )


# --- outbound requests ----------------------------------------------------------------------------


class _Params(msgspec.Struct, frozen=True, omit_defaults=True):
    channel: str
    symbol: list[str]
    snapshot: bool | None = None


class _Request(msgspec.Struct, frozen=True, omit_defaults=True):
    method: str
    params: _Params | None = None
    req_id: int | None = None


_encoder = msgspec.json.Encoder()


def _channel_request(
    method: str,
    channel: Channel,
    symbols: list[str] | tuple[str, ...],
    req_id: int | None,
    *,
    snapshot: bool | None,
) -> bytes:
    if channel not in ("ticker", "trade"):
        raise ValueError(f"channel {channel!r} is not one of ticker, trade")
    if isinstance(symbols, str) or not symbols:
        raise ValueError(f"symbols must be a non-empty list of pairs, got {symbols!r}")
    # Never put a v1 name on the wire: v2 refuses XBT/USD outright.
    pairs = [normalise_pair(symbol) for symbol in symbols]
    return _encoder.encode(_Request(method, _Params(channel, pairs, snapshot), req_id))


def subscribe(
    channel: Channel,
    symbols: list[str] | tuple[str, ...],
    req_id: int | None = None,
    snapshot: bool = True,
) -> bytes:
    """``{"method": "subscribe", "params": {"channel", "symbol": [...], "snapshot"}, "req_id"}``.

    Symbols are normalised (``XBT/USD`` -> ``BTC/USD``); ``snapshot`` is always sent because the two
    Kraken references disagree on its default for trades.
    """
    return _channel_request("subscribe", channel, symbols, req_id, snapshot=snapshot)


def unsubscribe(
    channel: Channel, symbols: list[str] | tuple[str, ...], req_id: int | None = None
) -> bytes:
    return _channel_request("unsubscribe", channel, symbols, req_id, snapshot=None)


def ping(req_id: int | None = None) -> bytes:
    return _encoder.encode(_Request("ping", None, req_id))


# --- pairs ----------------------------------------------------------------------------------------

# v1 asset codes that v2 renames; everything else is the same code in both.
_V1_TO_V2: Final = {"XBT": "BTC", "XDG": "DOGE"}
_ASSET = re.compile(r"[A-Z0-9]{2,12}")  # the envelope's Pair pattern, one side of the slash


def normalise_pair(text: str) -> str:
    """``"xbt/usd"`` -> ``"BTC/USD"``: upper-case, v1 codes (XBT, XDG) mapped to v2 (BTC, DOGE).

    Only ``BASE/QUOTE`` is accepted. Slash-less names (``XBTUSD``, ``XXBTZUSD``) are refused rather
    than guessed at: where the base ends is not knowable without Kraken's catalogue (``XBTUSDT``).
    """
    base, sep, quote = text.strip().upper().partition("/")
    if not sep or not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        raise ValueError(
            f"{text!r} is not a pair written BASE/QUOTE (like BTC/USD) with 2-12 letters or digits"
            " on each side"
        )
    return f"{_V1_TO_V2.get(base, base)}/{_V1_TO_V2.get(quote, quote)}"


# --- time -----------------------------------------------------------------------------------------


# Trades arrive in bursts within the same second: caching the epoch of the "YYYY-MM-DDTHH:MM:SS"
# part makes the common case one dict hit plus one integer parse. Bounded: cleared when full.
_SECONDS_CACHE_SIZE: Final = 4096
_seconds: dict[str, int] = {}
_SCALES: Final[tuple[int, ...]] = tuple(10**n for n in range(10))


def _whole_seconds(prefix: str) -> int:
    if len(_seconds) >= _SECONDS_CACHE_SIZE:
        _seconds.clear()
    base = int(datetime.fromisoformat(prefix).replace(tzinfo=UTC).timestamp())
    _seconds[prefix] = base
    return base


def parse_rfc3339(ts: str) -> float:
    """``"2023-09-25T07:49:37.708706Z"`` -> ``1695628177.708706`` (epoch seconds, UTC).

    The result is the float nearest to the exact decimal instant (integer arithmetic, one correctly
    rounded division), for any number of fraction digits up to nanoseconds. Offsets other than
    ``Z`` go through :meth:`datetime.fromisoformat` (microsecond precision). Raises ValueError.
    """
    n = len(ts)
    if n >= 20 and ts[-1] == "Z" and ts[10] == "T" and (n == 20 or ts[19] == "."):
        prefix = ts[:19]
        base = _seconds.get(prefix)
        if base is None:
            try:
                base = _whole_seconds(prefix)
            except ValueError:
                raise ValueError(f"{ts!r} is not an RFC 3339 timestamp") from None
        if n == 20:
            return float(base)
        digits = ts[20:-1]
        if not digits or len(digits) > 9 or not digits.isascii() or not digits.isdigit():
            raise ValueError(f"{ts!r} is not an RFC 3339 timestamp")
        scale = _SCALES[len(digits)]
        return (base * scale + int(digits)) / scale
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        raise ValueError(f"{ts!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{ts!r} has no UTC offset")
    return parsed.timestamp()


def format_rfc3339(epoch: float) -> str:
    """Epoch seconds -> Kraken's form, ``2023-09-25T07:49:37.708706Z`` (6 fraction digits)."""
    micros = round(epoch * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:06d}Z"


# --- payloads -------------------------------------------------------------------------------------

_SIDES: Final[dict[str, Literal["b", "s"]]] = {"buy": "b", "sell": "s"}


def _positive(name: str, value: float | None, symbol: str) -> float:
    # NaN fails every comparison, so "not value > 0" also catches it; JSON cannot carry infinity
    # (msgspec refuses 1e999) but Python callers can.
    if value is None or not value > 0 or value == math.inf:
        raise ProtocolError("invalid", f"{symbol}: {name} must be a positive number, got {value}")
    return value


def _pair(symbol: str) -> str:
    base, sep, quote = symbol.partition("/")
    if not sep or not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        raise ProtocolError("invalid", f"symbol {symbol[:40]!r} is not BASE/QUOTE")
    return symbol


def ticker_payload(row: TickerRow, received_at: float) -> RawTicker:
    """A ticker row as ``rawticker``: volume_24h <- ``volume``, pct_change <- ``change_pct``.

    The event time is the row's ``timestamp`` when Kraken sends one, else ``received_at``.
    Raises :class:`ProtocolError` (``invalid``) for a missing, zero, negative or non-finite price,
    a negative volume or an unreadable timestamp.
    """
    symbol = _pair(row.symbol)
    last = _positive("last", row.last, symbol)
    bid = _positive("bid", row.bid, symbol)
    ask = _positive("ask", row.ask, symbol)
    volume = row.volume
    if not 0 <= volume < math.inf:
        raise ProtocolError("invalid", f"{symbol}: volume must be >= 0, got {volume}")
    if not math.isfinite(row.change_pct):
        raise ProtocolError("invalid", f"{symbol}: change_pct must be finite, got {row.change_pct}")
    if row.timestamp is None:
        timestamp = received_at
    else:
        try:
            timestamp = parse_rfc3339(row.timestamp)
        except ValueError as exc:
            raise ProtocolError("invalid", f"{symbol}: {exc}") from None
    return RawTicker(
        pair=symbol,
        last=last,
        bid=bid,
        ask=ask,
        volume_24h=volume,
        timestamp=timestamp,
        pct_change=row.change_pct,
    )


def trade_payload(row: TradeRow) -> RawTrade:
    """A trade row as ``rawtrade``: side ``buy``/``sell`` -> ``b``/``s``, ``volume`` is ``qty``.

    Raises :class:`ProtocolError` (``invalid``) for a zero, negative or non-finite price or
    quantity, an unknown side, a negative trade id or an unreadable timestamp.
    """
    symbol = _pair(row.symbol)
    side = _SIDES.get(row.side)
    if side is None:
        raise ProtocolError("invalid", f"{symbol}: side must be buy or sell, got {row.side[:20]!r}")
    if row.trade_id < 0:
        raise ProtocolError("invalid", f"{symbol}: trade_id must be >= 0, got {row.trade_id}")
    try:
        timestamp = parse_rfc3339(row.timestamp)
    except ValueError as exc:
        raise ProtocolError("invalid", f"{symbol}: {exc}") from None
    return RawTrade(
        pair=symbol,
        price=_positive("price", row.price, symbol),
        volume=_positive("qty", row.qty, symbol),
        timestamp=timestamp,
        side=side,
        trade_id=row.trade_id,
    )
