"""The wire contract: the seed's payloads, their keys, headers and timestamps, and clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.envelope import (
    PAYLOADS,
    SCHEMA_VERSION,
    ArticleContent,
    EnvelopeError,
    Header,
    Payload,
    RawAlert,
    RawArticle,
    RawTicker,
    RawTrade,
    Sentiment,
    decode,
    encode,
    header,
)

# Verbatim from the seed (seed/kafka.md, "Exemples de payloads").
SEED_EXAMPLES: dict[str, dict[str, Any]] = {
    "rawarticle": {
        "id": "https://coindesk.com/article-123",
        "title": "Bitcoin Hits $100K",
        "url": "https://coindesk.com/article-123",
        "website": "CoinDesk",
        "summary": "Bitcoin reached...",
        "content": {"text": "..."},
        "published_at": 1705312800.123,
        "scraped_at": 1705312950.456,
        "tags": ["bitcoin", "btc"],
        "sentiment": {"score": 0.8234, "label": "positive"},
        "cryptocurrencies_mentioned": ["bitcoin", "btc"],
    },
    "rawticker": {
        "pair": "XBT/USD",
        "last": 99950.50,
        "bid": 99900.00,
        "ask": 100000.00,
        "volume_24h": 15000.5,
        "timestamp": 1705312345.678,
        "pct_change": 2.51,
    },
    "rawtrade": {
        "pair": "XBT/USD",
        "price": 99950.50,
        "volume": 0.5,
        "timestamp": 1705312345.678,
        "side": "b",
    },
    "rawalert": {
        "pair": "XBT/USD",
        "type": "price_spike",
        "last": 99950.50,
        "change": 2.51,
        "threshold": 0.5,
        "timestamp": 1705312345.678,
    },
}

SEED_KEYS = {"rawarticle": b"CoinDesk", "rawticker": b"XBT/USD", "rawtrade": b"XBT/USD"}


def sample(topic: str) -> Payload:
    return {
        "rawarticle": RawArticle(
            id="https://example.org/a/1",
            title="Ether rallies",
            url="https://example.org/a/1",
            website="Decrypt",
            summary="ETH up.",
            content=ArticleContent(text="Ether rallied today."),
            published_at=1_700_000_000.0,
            scraped_at=1_700_000_100.5,
            tags=["ethereum"],
            sentiment=Sentiment(score=0.6, label="positive"),
            cryptocurrencies_mentioned=["ETH"],
        ),
        "rawticker": RawTicker(
            pair="BTC/USD",
            last=100.5,
            bid=100.0,
            ask=101.0,
            volume_24h=12.0,
            timestamp=1_700_000_000.25,
            pct_change=-1.5,
        ),
        "rawtrade": RawTrade(
            pair="ETH/USD",
            price=2000.0,
            volume=0.1,
            timestamp=1_700_000_000.5,
            side="s",
            trade_id=7,
        ),
        "rawalert": RawAlert(
            pair="SOL/USD",
            type="price_drop",
            last=90.0,
            change=-3.2,
            threshold=2.0,
            timestamp=1_700_000_001.0,
            window_s=60.0,
        ),
    }[topic]


def test_the_registry_knows_exactly_the_four_seed_topics() -> None:
    assert list(PAYLOADS) == ["rawarticle", "rawticker", "rawtrade", "rawalert"]


@pytest.mark.parametrize("topic", list(SEED_EXAMPLES))
def test_seed_examples_decode_as_valid(topic: str) -> None:
    payload = decode(topic, json.dumps(SEED_EXAMPLES[topic]).encode())
    assert isinstance(payload, PAYLOADS[topic])


@pytest.mark.parametrize("topic", list(SEED_EXAMPLES))
def test_values_carry_exactly_the_seed_field_names(topic: str) -> None:
    record = encode(decode(topic, json.dumps(SEED_EXAMPLES[topic]).encode()), producer="t")
    fields = set(json.loads(record.value))
    optional_additions = {"trade_id", "window_s"}  # DESIGN.md's deliberate additions
    assert set(SEED_EXAMPLES[topic]) <= fields <= set(SEED_EXAMPLES[topic]) | optional_additions


@pytest.mark.parametrize("topic", list(PAYLOADS))
def test_encode_then_decode_gives_back_the_payload(topic: str) -> None:
    payload = sample(topic)
    record = encode(payload, producer="cryptoviz-test")
    assert record.topic == topic
    assert decode(topic, record.value, record.headers) == payload


@pytest.mark.parametrize(
    ("topic", "key"),
    [
        ("rawarticle", b"Decrypt"),
        ("rawticker", b"BTC/USD"),
        ("rawtrade", b"ETH/USD"),
        ("rawalert", b"SOL/USD"),
    ],
)
def test_the_key_is_the_source_for_articles_and_the_pair_for_market_data(
    topic: str, key: bytes
) -> None:
    assert encode(sample(topic), producer="t").key == key


def test_the_record_timestamp_is_the_event_time_in_milliseconds() -> None:
    assert encode(sample("rawticker"), producer="t").timestamp_ms == 1_700_000_000_250
    # Articles are stamped when scraped, so an old article does not leave retention at once.
    assert encode(sample("rawarticle"), producer="t").timestamp_ms == 1_700_000_100_500


def test_headers_carry_schema_version_producer_and_a_unique_event_id() -> None:
    first = encode(sample("rawtrade"), producer="cryptoviz-kraken")
    second = encode(sample("rawtrade"), producer="cryptoviz-kraken")
    assert header(first.headers, Header.SCHEMA) == "rawtrade"
    assert header(first.headers, Header.SCHEMA_VERSION) == str(SCHEMA_VERSION)
    assert header(first.headers, Header.PRODUCER) == "cryptoviz-kraken"
    assert header(first.headers, Header.EVENT_ID) != header(second.headers, Header.EVENT_ID)
    explicit = encode(sample("rawtrade"), producer="p", event_id="ETH/USD:7")
    assert header(explicit.headers, Header.EVENT_ID) == "ETH/USD:7"


def test_records_without_headers_decode_like_the_seed_console_producer_sends_them() -> None:
    assert decode("rawticker", encode(sample("rawticker"), producer="t").value, ()) == sample(
        "rawticker"
    )


def error_of(topic: str, value: bytes | None, headers: Any = ()) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as caught:
        decode(topic, value, headers)
    return caught.value


def ticker(**changes: Any) -> bytes:
    return json.dumps({**SEED_EXAMPLES["rawticker"], **changes}).encode()


def test_malformed_json_names_the_topic_and_says_malformed() -> None:
    error = error_of("rawticker", b'{"pair": "XBT/USD", "last": ')
    assert (error.topic, error.kind) == ("rawticker", "malformed_json")
    assert "malformed JSON" in str(error)


def test_a_wrong_type_names_the_field() -> None:
    error = error_of("rawticker", ticker(last="99950.5"))
    assert (error.field, error.kind) == ("last", "invalid")
    assert str(error).startswith("rawticker.last: Expected `float`, got `str`")


def test_a_missing_field_names_the_field() -> None:
    value = json.loads(ticker())
    del value["bid"]
    error = error_of("rawticker", json.dumps(value).encode())
    assert error.field == "bid"
    assert error.reason == "required field is missing"


def test_a_nested_field_is_named_by_its_path() -> None:
    article = {**SEED_EXAMPLES["rawarticle"], "sentiment": {"score": 1.7, "label": "positive"}}
    error = error_of("rawarticle", json.dumps(article).encode())
    assert error.field == "sentiment.score"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"last": -1.0}, "last"),
        ({"last": 0}, "last"),
        ({"pair": "btc-usd"}, "pair"),
        ({"volume_24h": -0.1}, "volume_24h"),
        ({"timestamp": 0}, "timestamp"),
    ],
)
def test_impossible_values_are_refused(changes: dict[str, Any], field: str) -> None:
    assert error_of("rawticker", ticker(**changes)).field == field


def test_trade_side_and_alert_type_are_closed_vocabularies() -> None:
    trade = {**SEED_EXAMPLES["rawtrade"], "side": "buy"}
    assert error_of("rawtrade", json.dumps(trade).encode()).field == "side"
    alert = {**SEED_EXAMPLES["rawalert"], "type": "moon"}
    assert error_of("rawalert", json.dumps(alert).encode()).field == "type"


def test_an_unknown_topic_is_refused_with_the_known_ones_listed() -> None:
    error = error_of("rawquote", b"{}")
    assert error.kind == "unknown_topic"
    assert "rawticker" in str(error)


def test_an_oversized_value_is_refused_before_parsing() -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode("rawticker", b" " * 2_000 + ticker(), max_value_bytes=1_000)
    assert caught.value.kind == "too_large"
    assert "above the 1000-byte limit" in str(caught.value)


def test_a_tombstone_is_refused() -> None:
    assert error_of("rawtrade", None).kind == "empty"


def test_a_record_claiming_another_schema_or_a_newer_version_is_refused() -> None:
    value = encode(sample("rawticker"), producer="t").value
    assert error_of("rawticker", value, [("schema", b"rawtrade")]).kind == "wrong_schema"
    assert error_of("rawticker", value, [("schema-version", b"2")]).kind == "wrong_schema"


def test_encoding_refuses_what_consumers_would_refuse() -> None:
    with pytest.raises(EnvelopeError) as caught:
        encode(
            RawTrade(pair="BTC/USD", price=-5.0, volume=1.0, timestamp=1.0, side="b"),
            producer="t",
        )
    assert caught.value.field == "price"


def test_nan_and_infinity_never_reach_the_wire() -> None:
    with pytest.raises(ValueError, match="finite"):
        RawTicker(
            pair="BTC/USD",
            last=float("nan"),
            bid=1.0,
            ask=1.0,
            volume_24h=1.0,
            timestamp=1.0,
            pct_change=0.0,
        )
    with pytest.raises(EnvelopeError):
        decode("rawticker", ticker().replace(b"2.51", b"Infinity"))


def test_encoding_an_oversized_payload_is_refused() -> None:
    article = sample("rawarticle")
    assert isinstance(article, RawArticle)
    huge = RawArticle(
        **{f: getattr(article, f) for f in article.__struct_fields__ if f != "content"},
        content=ArticleContent(text="x" * 2_000),
    )
    with pytest.raises(EnvelopeError) as caught:
        encode(huge, producer="t", max_value_bytes=1_000)
    assert caught.value.kind == "too_large"
