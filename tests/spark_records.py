"""Records as the Spark jobs see them: Kafka-source rows built from envelope payloads or raw
bytes, and the payloads the Spark tests share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from services.spark.decode import decode_batch
from services.spark.schemas import KAFKA_ARROW_SCHEMA
from shared.envelope import (
    ArticleContent,
    Payload,
    RawAlert,
    RawArticle,
    RawTicker,
    RawTrade,
    Sentiment,
    encode,
)

T0 = 1_764_000_000.25  # 2025-11-24T16:00:00.25Z


def trade(trade_id: int, *, pair: str = "BTC/USD", price: float = 97_000.5) -> RawTrade:
    return RawTrade(
        pair=pair, price=price, volume=0.25, timestamp=T0 + trade_id, side="b", trade_id=trade_id
    )


def ticker(at: float = T0) -> RawTicker:
    return RawTicker(
        pair="ETH/USD",
        last=3_350.1,
        bid=3_350.0,
        ask=3_350.2,
        volume_24h=12_345.6,
        timestamp=at,
        pct_change=-1.25,
    )


def alert(at: float = T0) -> RawAlert:
    return RawAlert(
        pair="SOL/USD",
        type="price_spike",
        last=250.0,
        change=6.2,
        threshold=5.0,
        timestamp=at,
        window_s=300.0,
    )


def article(number: int = 1, *, published: float | None = T0 - 600) -> RawArticle:
    return RawArticle(
        id=f"article-{number}",
        title="Bitcoin tops $97,000",
        url=f"https://news.example/{number}",
        website="news.example",
        summary="ETF inflows return.",
        content=ArticleContent(text="Bitcoin rose above $97,000 as ETF inflows resumed."),
        published_at=published,
        scraped_at=T0,
        tags=["markets", "bitcoin"],
        sentiment=Sentiment(score=0.62, label="positive"),
        cryptocurrencies_mentioned=["BTC", "ETH"],
    )


@dataclass
class Raw:
    """A record as it may sit in Kafka, valid or not."""

    topic: str
    value: bytes | None
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, payload: Payload) -> Raw:
        record = encode(payload, producer="tests")
        return cls(payload.topic, record.value, record.key, record.headers)


def kafka_batch(records: Sequence[Raw], *, first_offset: int = 0) -> pa.RecordBatch:
    """Rows with the Kafka source's columns; offsets count up per topic from ``first_offset``."""
    offsets: dict[str, int] = {}
    rows: dict[str, list[object]] = {name: [] for name in KAFKA_ARROW_SCHEMA.names}
    for record in records:
        offset = offsets.get(record.topic, first_offset)
        offsets[record.topic] = offset + 1
        rows["key"].append(record.key)
        rows["value"].append(record.value)
        rows["topic"].append(record.topic)
        rows["partition"].append(0)
        rows["offset"].append(offset)
        rows["timestamp"].append(int(T0 * 1_000_000))
        rows["timestampType"].append(0)
        rows["headers"].append([{"key": k, "value": v} for k, v in record.headers])
    return pa.RecordBatch.from_pydict(rows, schema=KAFKA_ARROW_SCHEMA)


def decoded_table(records: Sequence[Raw], *, first_offset: int = 0) -> pa.Table:
    """What foreachBatch receives: the decoded rows, as ``DataFrame.toArrow`` returns them."""
    return pa.Table.from_batches([decode_batch(kafka_batch(records, first_offset=first_offset))])
