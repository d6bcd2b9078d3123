"""The Spark jobs' schemas come from the envelope library, and their decode step accepts exactly
what the envelope accepts: valid records become typed payload columns, the others dead letters
with the envelope's reason."""

from __future__ import annotations

import json
import re

import msgspec
import pyarrow as pa
import pytest

from services.spark.schemas import (
    decoded_arrow_schema,
    payload_arrow_type,
    spark_schema,
    staging_columns,
)
from services.spark.sink import MAPPINGS
from shared.envelope import PAYLOADS
from tests.spark_records import T0, Raw, alert, article, decoded_table, ticker, trade


def test_staging_columns_are_the_payload_fields_with_nested_ones_flattened() -> None:
    assert [c.name for c in staging_columns("rawarticle")] == [
        "id",
        "title",
        "url",
        "website",
        "summary",
        "content_text",
        "published_at",
        "scraped_at",
        "tags",
        "sentiment_score",
        "sentiment_label",
        "cryptocurrencies_mentioned",
    ]
    assert [c.name for c in staging_columns("rawtrade")] == [
        "pair",
        "price",
        "volume",
        "timestamp",
        "side",
        "trade_id",
    ]


def test_types_and_nullability_follow_the_payload_types() -> None:
    trade_type = payload_arrow_type("rawtrade")
    assert trade_type.field("price").type == pa.float64()
    assert not trade_type.field("price").nullable
    assert trade_type.field("trade_id").type == pa.int64()
    assert trade_type.field("trade_id").nullable  # optional in the contract
    article_type = payload_arrow_type("rawarticle")
    assert article_type.field("published_at").nullable
    assert article_type.field("tags").type == pa.list_(pa.field("item", pa.string(), False))
    assert article_type.field("sentiment").type.field("score").type == pa.float64()


@pytest.mark.parametrize("topic", list(PAYLOADS))
def test_every_payload_field_reaches_a_column_of_its_table(topic: str) -> None:
    fields = {f.encode_name for f in msgspec.structs.fields(PAYLOADS[topic])}
    columns = {c.path[0] for c in staging_columns(topic)}
    assert columns == fields
    used = " ".join(expr for _, expr in MAPPINGS[topic].columns)
    unused = [c.name for c in staging_columns(topic) if not re.search(rf"\b{c.name}\b", used)]
    assert unused == []


def test_the_spark_schema_has_one_struct_column_per_topic() -> None:
    schema = spark_schema(decoded_arrow_schema())
    assert schema.fieldNames()[-4:] == list(PAYLOADS)
    assert schema["rawarticle"].dataType["sentiment"].dataType.fieldNames() == ["score", "label"]


def test_valid_records_become_their_topic_payload_and_nothing_else() -> None:
    table = decoded_table([Raw.of(trade(7)), Raw.of(ticker()), Raw.of(alert()), Raw.of(article())])
    rows = table.to_pylist()
    assert [row["kind"] for row in rows] == [None] * 4
    assert rows[0]["rawtrade"] == {
        "pair": "BTC/USD",
        "price": 97_000.5,
        "volume": 0.25,
        "timestamp": T0 + 7,
        "side": "b",
        "trade_id": 7,
    }
    assert rows[0]["rawticker"] is None
    assert rows[3]["rawarticle"]["sentiment"] == {"score": 0.62, "label": "positive"}
    assert rows[3]["rawarticle"]["content"] == {
        "text": "Bitcoin rose above $97,000 as ETF inflows resumed."
    }
    assert [row["value"] for row in rows] == [None] * 4  # raw bytes only for dead letters


def test_the_seed_example_without_headers_or_trade_id_is_valid() -> None:
    seed = {"pair": "XBT/USD", "price": 50000.0, "volume": 0.1, "timestamp": T0, "side": "b"}
    rows = decoded_table([Raw("rawtrade", json.dumps(seed).encode())]).to_pylist()
    assert rows[0]["kind"] is None
    assert rows[0]["rawtrade"]["trade_id"] is None


@pytest.mark.parametrize(
    ("raw", "kind", "reason"),
    [
        (Raw("rawtrade", b"{not json"), "malformed_json", "malformed JSON"),
        (
            Raw("rawtrade", b'{"pair": "BTC/USD", "price": "high"}'),
            "invalid",
            "rawtrade.price: Expected `float`, got `str`",
        ),
        (
            Raw("rawticker", b'{"pair": "BTC/USD", "last": 1.0}'),
            "invalid",
            "required field is missing",
        ),
        (Raw("rawtrade", None), "empty", "tombstone"),
        (
            Raw("rawtrade", Raw.of(trade(1)).value, headers=[("schema", b"rawticker")]),
            "wrong_schema",
            "header says schema 'rawticker'",
        ),
        (Raw("rawsomething", b"{}"), "unknown_topic", "unknown topic"),
    ],
)
def test_bad_records_become_dead_letters_with_the_envelope_reason(
    raw: Raw, kind: str, reason: str
) -> None:
    row = decoded_table([raw]).to_pylist()[0]
    assert row["kind"] == kind
    assert reason in row["reason"]
    assert row["value"] == raw.value
    assert row["key"] == raw.key
    assert all(row[topic] is None for topic in PAYLOADS)
