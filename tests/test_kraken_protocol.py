"""Kraken WS v2 frames -> typed frames -> rawticker / rawtrade payloads.

The frames are Kraken's documented examples (URLs in services/kraken/protocol.py), with the
refusal and the extra status keys in the shape third-party recordings of the live venue show.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest

from services.kraken.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    Heartbeat,
    Pong,
    ProtocolError,
    Status,
    SubscriptionAck,
    TickerMessage,
    TickerRow,
    TradeMessage,
    TradeRow,
    format_rfc3339,
    normalise_pair,
    parse_frame,
    parse_rfc3339,
    ping,
    subscribe,
    ticker_payload,
    trade_payload,
    unsubscribe,
)
from shared.envelope import RawTicker, RawTrade, decode, encode

STATUS = b"""{"channel": "status", "data": [{"api_version": "v2",
  "connection_id": 13834774380200032777, "system": "online", "version": "2.0.0"}],
  "type": "update"}"""
STATUS_WITH_EXTRAS = (
    b'{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"maintenance",'
    b'"api_version":"v2","connection_id":18125794168470749634,"upcoming_maintenance":[],'
    b'"emergency":[]}]}'
)
HEARTBEAT = b'{"channel": "heartbeat"}'
PONG = b"""{"method": "pong", "req_id": 101, "time_in": "2023-09-24T14:10:23.799685Z",
  "time_out": "2023-09-24T14:10:23.799703Z"}"""
TICKER_ACK = b"""{"method": "subscribe", "result": {"channel": "ticker", "snapshot": true,
  "symbol": "ALGO/USD"}, "success": true, "time_in": "2023-09-25T09:04:31.742599Z",
  "time_out": "2023-09-25T09:04:31.742648Z", "req_id": 7}"""
REFUSAL = (
    b'{"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,'
    b'"symbol":"XBT/USD","time_in":"2026-09-25T17:48:54.701041Z",'
    b'"time_out":"2026-09-25T17:48:54.701062Z"}'
)
TICKER_SNAPSHOT = b"""{"channel": "ticker", "type": "snapshot", "data": [{"symbol": "ALGO/USD",
  "bid": 0.10025, "bid_qty": 740.0, "ask": 0.10036, "ask_qty": 1361.44813783, "last": 0.10035,
  "volume": 997038.98383185, "vwap": 0.10148, "low": 0.09979, "high": 0.10285,
  "change": -0.00017, "change_pct": -0.17, "timestamp": "2023-09-25T09:04:31.742648Z"}]}"""
TRADE_SNAPSHOT = b"""{"channel": "trade", "type": "snapshot", "data": [
  {"symbol": "MATIC/USD", "side": "buy", "price": 0.5147, "qty": 6423.46326,
   "ord_type": "limit", "trade_id": 4665846, "timestamp": "2023-09-25T07:48:36.925533Z"},
  {"symbol": "MATIC/USD", "side": "sell", "price": 0.5147, "qty": 1136.19677815,
   "ord_type": "market", "trade_id": 4665847, "timestamp": "2023-09-25T07:49:36.925603Z"}]}"""


def trade_frame(**overrides: Any) -> bytes:
    row = {
        "symbol": "BTC/USD",
        "side": "buy",
        "price": 26500.4,
        "qty": 0.5,
        "ord_type": "limit",
        "trade_id": 42,
        "timestamp": "2023-09-25T07:49:37.708706Z",
    }
    row.update(overrides)
    row = {k: v for k, v in row.items() if v is not ...}
    return json.dumps({"channel": "trade", "type": "update", "data": [row]}).encode()


def ticker_row(**overrides: Any) -> TickerRow:
    frame = parse_frame(TICKER_SNAPSHOT)
    assert isinstance(frame, TickerMessage)
    return msgspec.structs.replace(frame.data[0], **overrides)


def trade_row(**overrides: Any) -> TradeRow:
    frame = parse_frame(trade_frame(**overrides))
    assert isinstance(frame, TradeMessage)
    return frame.data[0]


# --- each frame kind ------------------------------------------------------------------------------


def test_status_keeps_the_uint64_connection_id() -> None:
    frame = parse_frame(STATUS)
    assert frame == Status("online", "v2", 13834774380200032777, "2.0.0")
    assert isinstance(frame, Status)
    assert frame.online


def test_status_ignores_keys_it_does_not_know() -> None:
    frame = parse_frame(STATUS_WITH_EXTRAS.decode())  # str input as websockets delivers text
    assert isinstance(frame, Status)
    assert frame.system == "maintenance"
    assert not frame.online


def test_heartbeat() -> None:
    assert isinstance(parse_frame(HEARTBEAT), Heartbeat)


def test_pong_without_success_is_a_success() -> None:
    frame = parse_frame(PONG)
    assert frame == Pong(101, "2023-09-24T14:10:23.799685Z", "2023-09-24T14:10:23.799703Z")
    assert isinstance(frame, Pong)
    assert frame.success


def test_subscribe_ack_takes_symbol_from_result() -> None:
    frame = parse_frame(TICKER_ACK)
    assert isinstance(frame, SubscriptionAck)
    assert (frame.method, frame.success, frame.channel, frame.symbol) == (
        "subscribe",
        True,
        "ticker",
        "ALGO/USD",
    )
    assert frame.snapshot is True
    assert frame.req_id == 7
    assert frame.error is None


def test_refusal_takes_symbol_from_top_level() -> None:
    frame = parse_frame(REFUSAL)
    assert isinstance(frame, SubscriptionAck)
    assert not frame.success
    assert frame.symbol == "XBT/USD"
    assert frame.error == "Currency pair not supported XBT/USD"
    assert frame.channel is None


def test_unsubscribe_ack() -> None:
    raw = (
        b'{"method":"unsubscribe","result":{"channel":"trade","symbol":"BTC/USD"},'
        b'"success":true,"time_in":"2023-09-25T09:04:31.742599Z",'
        b'"time_out":"2023-09-25T09:04:31.742648Z"}'
    )
    frame = parse_frame(raw)
    assert isinstance(frame, SubscriptionAck)
    assert (frame.method, frame.symbol, frame.success) == ("unsubscribe", "BTC/USD", True)


def test_error_without_success_flag_is_a_refusal() -> None:
    frame = parse_frame(b'{"method":"subscribe","error":"Already subscribed","symbol":"BTC/USD"}')
    assert isinstance(frame, SubscriptionAck)
    assert not frame.success


def test_ticker_snapshot() -> None:
    frame = parse_frame(TICKER_SNAPSHOT)
    assert isinstance(frame, TickerMessage)
    assert frame.type == "snapshot"
    (row,) = frame.data
    assert (row.symbol, row.bid, row.ask, row.last) == ("ALGO/USD", 0.10025, 0.10036, 0.10035)
    assert (row.volume, row.change_pct) == (997038.98383185, -0.17)
    assert row.timestamp == "2023-09-25T09:04:31.742648Z"


def test_ticker_row_without_timestamp_or_extras() -> None:
    # The older reference's 12-field schema: no timestamp.
    raw = (
        b'{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1.0,'
        b'"ask":1.1,"last":1.05,"volume":3.0,"change_pct":0.5,"trades":135262}]}'
    )
    frame = parse_frame(raw)
    assert isinstance(frame, TickerMessage)
    assert frame.data[0].timestamp is None
    assert frame.data[0].vwap is None


def test_trade_snapshot() -> None:
    frame = parse_frame(TRADE_SNAPSHOT)
    assert isinstance(frame, TradeMessage)
    assert frame.type == "snapshot"
    assert [row.trade_id for row in frame.data] == [4665846, 4665847]
    assert frame.data[1] == TradeRow(
        "MATIC/USD", "sell", 0.5147, 1136.19677815, 4665847, "2023-09-25T07:49:36.925603Z", "market"
    )


# --- bad frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b'{"channel":"trade","type":"update","data":[{"symbol"', b"not json", "{'a': 1}"]
)
def test_malformed_json(raw: bytes | str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.kind == "malformed_json"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"channel":"book","type":"snapshot","data":[]}',
        b'{"channel":"executions","type":"update","data":[]}',
        b'{"method":"add_order","success":true}',
    ],
)
def test_unknown_channel_or_method(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.kind == "unknown_channel"


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        (b"[1, 2]", "object"),
        (b"{}", "neither channel nor method"),
        (b'{"channel":"trade","type":"update"}', "without data"),
        (b'{"channel":"trade","type":"delta","data":[]}', "'delta'"),
        (b'{"channel":"trade","type":"update","data":null}', "trade data"),
        (b'{"channel":"status","type":"update","data":[]}', "empty"),
        (b'{"channel":"status","type":"update","data":[{"version":"2"}]}', "system"),
        (trade_frame(price=...), "price"),
        (trade_frame(trade_id=...), "trade_id"),
        (trade_frame(timestamp=...), "timestamp"),
        (trade_frame(price="26500.4"), "price"),
        (trade_frame(trade_id=1.5), "trade_id"),
        # JSON's only way towards infinity: msgspec refuses it.
        (trade_frame(price=123.5).replace(b"123.5", b"1e999"), "out of range"),
    ],
)
def test_invalid_frames_name_the_field(raw: bytes, mentions: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.kind == "invalid"
    assert mentions in caught.value.reason


def test_huge_frame_is_refused_before_decoding() -> None:
    row = json.loads(trade_frame())["data"][0]
    raw = json.dumps({"channel": "trade", "type": "update", "data": [row] * 20_000}).encode()
    assert len(raw) > DEFAULT_MAX_FRAME_BYTES
    with pytest.raises(ProtocolError) as caught:
        parse_frame(raw)
    assert caught.value.kind == "too_large"
    with pytest.raises(ProtocolError, match="too_large"):
        parse_frame(trade_frame(), max_bytes=10)


def test_error_message_carries_kind_and_reason() -> None:
    error = ProtocolError("invalid", "price must be positive")
    assert str(error) == "invalid: price must be positive"
    assert isinstance(error, ValueError)


# --- payloads -------------------------------------------------------------------------------------


def test_trade_payload() -> None:
    payload = trade_payload(trade_row(side="sell"))
    assert payload == RawTrade(
        pair="BTC/USD",
        price=26500.4,
        volume=0.5,
        timestamp=1695628177.708706,
        side="s",
        trade_id=42,
    )
    assert trade_payload(trade_row()).side == "b"


def test_trade_payload_encodes_and_round_trips() -> None:
    record = encode(trade_payload(trade_row()), producer="test")
    assert record.key == b"BTC/USD"
    assert record.timestamp_ms == 1695628177709
    assert json.loads(record.value)["trade_id"] == 42
    assert decode("rawtrade", record.value, record.headers) == trade_payload(trade_row())


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"price": -1}, "price"),
        ({"price": 0}, "price"),
        ({"qty": 0}, "qty"),
        ({"qty": -0.5}, "qty"),
        ({"side": "short"}, "side"),
        ({"trade_id": -1}, "trade_id"),
        ({"timestamp": "yesterday"}, "RFC 3339"),
        ({"symbol": "BTCUSD"}, "BASE/QUOTE"),
    ],
)
def test_trade_payload_refuses_bad_rows(overrides: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        trade_payload(trade_row(**overrides))
    assert caught.value.kind == "invalid"
    assert mentions in caught.value.reason


def test_trade_payload_refuses_nan_from_python_callers() -> None:
    row = msgspec.structs.replace(trade_row(), price=math.nan)
    with pytest.raises(ProtocolError, match="price"):
        trade_payload(row)
    row = msgspec.structs.replace(trade_row(), qty=math.inf)
    with pytest.raises(ProtocolError, match="qty"):
        trade_payload(row)


def test_ticker_payload_uses_the_row_timestamp() -> None:
    payload = ticker_payload(ticker_row(), received_at=1.0)
    assert payload == RawTicker(
        pair="ALGO/USD",
        last=0.10035,
        bid=0.10025,
        ask=0.10036,
        volume_24h=997038.98383185,
        timestamp=parse_rfc3339("2023-09-25T09:04:31.742648Z"),
        pct_change=-0.17,
    )


def test_ticker_payload_falls_back_to_receive_time() -> None:
    payload = ticker_payload(ticker_row(timestamp=None), received_at=1700000000.25)
    assert payload.timestamp == 1700000000.25


def test_ticker_payload_encodes_and_round_trips() -> None:
    payload = ticker_payload(ticker_row(), received_at=1.0)
    record = encode(payload, producer="test")
    assert record.key == b"ALGO/USD"
    value = json.loads(record.value)
    assert value["volume_24h"] == 997038.98383185
    assert value["pct_change"] == -0.17
    assert decode("rawticker", record.value) == payload


@pytest.mark.parametrize(
    "overrides",
    [
        {"last": None},
        {"last": 0.0},
        {"bid": -1.0},
        {"ask": 0.0},
        {"ask": math.nan},
        {"volume": -1.0},
        {"volume": math.nan},
        {"change_pct": math.inf},
        {"timestamp": "2023-13-45T00:00:00Z"},
    ],
)
def test_ticker_payload_refuses_bad_rows(overrides: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        ticker_payload(ticker_row(**overrides), received_at=1.0)
    assert caught.value.kind == "invalid"


def test_ticker_payload_accepts_zero_volume_and_negative_change() -> None:
    payload = ticker_payload(ticker_row(volume=0.0, change_pct=-12.5), received_at=1.0)
    assert (payload.volume_24h, payload.pct_change) == (0.0, -12.5)


# --- requests -------------------------------------------------------------------------------------


def test_subscribe_request_normalises_symbols() -> None:
    assert json.loads(subscribe("ticker", ["xbt/usd", "ETH/USD"], 7)) == {
        "method": "subscribe",
        "params": {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
        "req_id": 7,
    }
    request = json.loads(subscribe("trade", ("XDG/EUR",), snapshot=False))
    assert request == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["DOGE/EUR"], "snapshot": False},
    }


def test_unsubscribe_and_ping_requests() -> None:
    assert json.loads(unsubscribe("trade", ["BTC/USD"], 8)) == {
        "method": "unsubscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD"]},
        "req_id": 8,
    }
    assert json.loads(ping(101)) == {"method": "ping", "req_id": 101}
    assert json.loads(ping()) == {"method": "ping"}


@pytest.mark.parametrize(
    ("channel", "symbols"), [("book", ["BTC/USD"]), ("trade", []), ("trade", "BTC/USD")]
)
def test_bad_requests_are_refused(channel: Any, symbols: Any) -> None:
    with pytest.raises(ValueError, match=r"channel|symbols"):
        subscribe(channel, symbols, 1)


# --- pairs and times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("XBT/USD", "BTC/USD"),
        ("xdg/usd", "DOGE/USD"),
        (" btc/eur ", "BTC/EUR"),
        ("ETH/XBT", "ETH/BTC"),
        ("1INCH/USD", "1INCH/USD"),
        ("SOL/USD", "SOL/USD"),
    ],
)
def test_normalise_pair(text: str, pair: str) -> None:
    assert normalise_pair(text) == pair


@pytest.mark.parametrize(
    "text", ["BTCUSD", "XBTUSD", "XXBTZUSD", "BTC-USD", "BTC/", "/USD", "BTC/USD/EUR", "B/USD", ""]
)
def test_normalise_pair_refuses_what_it_cannot_split(text: str) -> None:
    # Slash-less names are refused, not guessed: XBTUSDT could be XBT/USDT or XBTU/SDT.
    with pytest.raises(ValueError, match="BASE/QUOTE") as caught:
        normalise_pair(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2023-09-25T07:49:37.708706Z", 1695628177.708706),
        ("2023-09-25T07:49:37Z", 1695628177.0),
        ("2023-09-25T07:49:37.7Z", 1695628177.7),
        ("1970-01-01T00:00:00.000001Z", 1e-06),
        ("2024-02-29T23:59:59.999999Z", 1709251199.999999),
        ("2023-09-25T09:49:37.708706+02:00", 1695628177.708706),
    ],
)
def test_parse_rfc3339_is_the_nearest_float(text: str, epoch: float) -> None:
    assert parse_rfc3339(text) == epoch


def test_parse_rfc3339_keeps_nanoseconds() -> None:
    # datetime stops at microseconds; the integer path does not.
    assert parse_rfc3339("2026-09-25T17:48:26.844359566Z") == 1790358506.844359566
    assert parse_rfc3339("2026-09-25T17:48:26.844359566Z") != 1790358506.844359


@pytest.mark.parametrize(
    "text",
    [
        "2023-09-25T07:49:37.Z",
        "2023-09-25T07:49:37.12345678901Z",
        "2023-09-25T07:49:37.1x3Z",
        "2023-09-25T07:49:37",  # no offset: not an instant
        "2023-02-30T07:49:37Z",
        "not a time at all, clearly",
        "",
    ],
)
def test_parse_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|offset"):
        parse_rfc3339(text)


def test_format_rfc3339_round_trips() -> None:
    assert format_rfc3339(1695628177.708706) == "2023-09-25T07:49:37.708706Z"
    assert format_rfc3339(1695628177.0) == "2023-09-25T07:49:37.000000Z"
    for epoch in (1695628177.708706, 1790358506.000001, 0.5):
        assert parse_rfc3339(format_rfc3339(epoch)) == epoch
