"""The wire contract: one typed payload per topic, and the record it travels in.

Values are the seed's plain JSON payloads (``seed/kafka.md``, "Exemples de payloads"); envelope
metadata rides in Kafka headers so the value stays exactly what the seed shows. The record key is
the payload's key field (``website`` for articles, ``pair`` for market data) and the record
timestamp is the event time.

Why msgspec: this is the hot path of every producer and consumer. msgspec decodes JSON straight
into typed structs and validates types and constraints in the same single pass, in C: about 2.4x
json.loads + pydantic v2 and on a par with pydantic's own JSON validation on these small payloads
(``make bench`` prints the figures), with structs that are cheaper to build and encode, and errors
that carry a JSON path (``$.sentiment.score``) we turn into a field name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
DEFAULT_MAX_VALUE_BYTES: Final = 1_048_576  # Kafka's default message.max.bytes

# Kraken WS v2 symbols (BTC/USD); the seed's own examples use v1's XBT/USD, which stays valid.
Pair = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$")]
Price = Annotated[float, msgspec.Meta(gt=0)]
Quantity = Annotated[float, msgspec.Meta(ge=0)]
EpochSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Payload(msgspec.Struct, forbid_unknown_fields=False, frozen=True, kw_only=True):
    """Base of every topic's payload. Subclasses name their topic and key field."""

    topic: ClassVar[str]
    key_field: ClassVar[str]
    time_field: ClassVar[str]

    def __post_init__(self) -> None:
        # JSON cannot carry NaN or infinities, but Python callers can; reject them before they
        # reach the wire as nulls.
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value}")

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))

    @property
    def event_time(self) -> float:
        return float(getattr(self, self.time_field))


class ArticleContent(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    text: str


class Sentiment(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    score: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
    label: Literal["positive", "negative", "neutral"]


class RawArticle(Payload, frozen=True):
    """``rawarticle``: one scraped article with its sentiment, keyed by source (``website``)."""

    topic: ClassVar[str] = "rawarticle"
    key_field: ClassVar[str] = "website"
    # The scrape time, not the publication time: an article published ten days ago and scraped
    # now must not fall straight out of the topic's 7-day retention.
    time_field: ClassVar[str] = "scraped_at"

    id: NonEmpty
    title: str
    url: NonEmpty
    website: NonEmpty
    summary: str
    content: ArticleContent
    published_at: EpochSeconds | None
    scraped_at: EpochSeconds
    tags: list[str]
    sentiment: Sentiment
    # Canonical upper-case tickers (BTC) from our producers; the seed's example has names.
    cryptocurrencies_mentioned: list[str]


class RawTicker(Payload, frozen=True):
    """``rawticker``: a Kraken ticker update; ``pct_change`` is Kraken's 24 h change_pct."""

    topic: ClassVar[str] = "rawticker"
    key_field: ClassVar[str] = "pair"
    time_field: ClassVar[str] = "timestamp"

    pair: Pair
    last: Price
    bid: Price
    ask: Price
    volume_24h: Quantity
    timestamp: EpochSeconds
    pct_change: float


class RawTrade(Payload, frozen=True):
    """``rawtrade``: one trade; ``trade_id`` is Kraken v2's per-pair sequence (gaps, duplicates)."""

    topic: ClassVar[str] = "rawtrade"
    key_field: ClassVar[str] = "pair"
    time_field: ClassVar[str] = "timestamp"

    pair: Pair
    price: Price
    volume: Annotated[float, msgspec.Meta(gt=0)]
    timestamp: EpochSeconds
    side: Literal["b", "s"]
    trade_id: Annotated[int, msgspec.Meta(ge=0)] | None = None


class RawAlert(Payload, frozen=True):
    """``rawalert``: a sharp move; ``change`` is the percent move over ``window_s`` seconds."""

    topic: ClassVar[str] = "rawalert"
    key_field: ClassVar[str] = "pair"
    time_field: ClassVar[str] = "timestamp"

    pair: Pair
    type: Literal["price_spike", "price_drop", "volume_spike"]
    last: Price
    change: float
    threshold: Annotated[float, msgspec.Meta(gt=0)]
    timestamp: EpochSeconds
    window_s: Annotated[float, msgspec.Meta(gt=0)] | None = None


PAYLOADS: Final[dict[str, type[Payload]]] = {
    cls.topic: cls for cls in (RawArticle, RawTicker, RawTrade, RawAlert)
}


class Header:
    """Kafka header names of the envelope metadata."""

    SCHEMA: Final = "schema"
    SCHEMA_VERSION: Final = "schema-version"
    PRODUCER: Final = "producer"
    EVENT_ID: Final = "event-id"


Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """A payload ready for Kafka: what a producer sends and a consumer decodes."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    timestamp_ms: int


class EnvelopeError(ValueError):
    """A record that cannot be encoded or decoded; says which topic, which field and why.

    ``kind`` is a short, bounded reason code for metric labels and dead-letter rows.
    """

    def __init__(self, topic: str, field: str | None, reason: str, kind: str) -> None:
        self.topic = topic
        self.field = field
        self.reason = reason
        self.kind = kind
        where = f"{topic}.{field}" if field else topic
        super().__init__(f"{where}: {reason}")


_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def _split_msgspec_error(message: str) -> tuple[str | None, str]:
    """Turn msgspec's "... - at `$.sentiment.score`" into ("sentiment.score", "...")."""
    match = _PATH.search(message)
    path, reason = (
        (None, message) if match is None else (match.group("path"), message[: match.start()])
    )
    missing = _MISSING.search(reason)
    if missing is not None:
        field = missing.group("field")
        path = f"{path}.{field}" if path else field
        reason = "required field is missing"
    return path or None, reason


_encoder = msgspec.json.Encoder()
_decoders = {name: msgspec.json.Decoder(cls) for name, cls in PAYLOADS.items()}


def new_event_id() -> str:
    return os.urandom(16).hex()


def encode(
    payload: Payload,
    *,
    producer: str,
    event_id: str | None = None,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    validate: bool = True,
) -> Record:
    """Turn a payload into a Kafka record: key, JSON value, envelope headers, event timestamp."""
    topic = payload.topic
    value = _encoder.encode(payload)
    if validate:
        # Constraints (positive prices, score range, pair pattern) are checked by the decoder only;
        # a round trip is the one check that matches what consumers will accept, byte for byte.
        decode(topic, value, max_value_bytes=max_value_bytes)
    elif len(value) > max_value_bytes:
        raise EnvelopeError(
            topic,
            None,
            f"value is {len(value)} bytes, above the {max_value_bytes}-byte limit",
            "too_large",
        )
    headers: Headers = [
        (Header.SCHEMA, topic.encode()),
        (Header.SCHEMA_VERSION, b"%d" % SCHEMA_VERSION),
        (Header.PRODUCER, producer.encode()),
        (Header.EVENT_ID, (event_id or new_event_id()).encode()),
    ]
    return Record(
        topic=topic,
        key=payload.key.encode(),
        value=value,
        headers=headers,
        timestamp_ms=round(payload.event_time * 1000),
    )


def decode(
    topic: str,
    value: bytes | None,
    headers: Headers | tuple[tuple[str, bytes], ...] = (),
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> Payload:
    """Validate a record's value against its topic's payload type.

    Raises :class:`EnvelopeError` naming the topic, the field and the reason. Records without
    envelope headers (the seed's console producer sends none) decode all the same; a record whose
    headers claim another schema, or a newer schema version, is refused.
    """
    decoder = _decoders.get(topic)
    if decoder is None:
        raise EnvelopeError(
            topic, None, f"unknown topic; known: {', '.join(PAYLOADS)}", "unknown_topic"
        )
    if value is None:
        raise EnvelopeError(topic, None, "record has no value (tombstone)", "empty")
    if len(value) > max_value_bytes:
        raise EnvelopeError(
            topic,
            None,
            f"value is {len(value)} bytes, above the {max_value_bytes}-byte limit",
            "too_large",
        )
    for name, raw in headers:
        if name == Header.SCHEMA and raw != topic.encode():
            claimed = raw.decode(errors="replace")
            raise EnvelopeError(topic, None, f"header says schema {claimed!r}", "wrong_schema")
        if name == Header.SCHEMA_VERSION and raw != b"%d" % SCHEMA_VERSION:
            claimed = raw.decode(errors="replace")
            raise EnvelopeError(
                topic,
                None,
                f"schema version {claimed} is not {SCHEMA_VERSION}, the one this build reads",
                "wrong_schema",
            )
    try:
        return decoder.decode(value)
    except msgspec.ValidationError as exc:
        field, reason = _split_msgspec_error(str(exc))
        raise EnvelopeError(topic, field, reason, "invalid") from None
    except msgspec.DecodeError as exc:
        field, reason = _split_msgspec_error(str(exc))
        raise EnvelopeError(topic, field, f"malformed JSON: {reason}", "malformed_json") from None


def header(headers: Headers | tuple[tuple[str, bytes], ...], name: str) -> str | None:
    for key, raw in headers:
        if key == name:
            return raw.decode(errors="replace")
    return None
