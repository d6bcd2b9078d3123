"""Spark and Arrow schemas, derived from the envelope library's payload types.

The wire contract has one home, ``shared.envelope``; the job never restates a field list. Each
payload struct is inspected with ``msgspec.inspect`` and mapped once to Arrow (what the decode step
builds) and once to Spark (what the query's plan carries). Nested structs (``content``,
``sentiment``) become nested struct columns; the sink flattens them to ``content_text``,
``sentiment_score`` and so on.

The Kafka columns are those of Spark's own ``kafka`` source, so the Python source and the native
one feed the same transformation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Final

import msgspec
import pyarrow as pa

from shared.envelope import PAYLOADS

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

# Columns of Spark's kafka source (``includeHeaders`` on), in its order.
KAFKA_ARROW_SCHEMA: Final = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("timestampType", pa.int32()),
        pa.field(
            "headers",
            pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())])),
        ),
    ]
)

# What the decode step adds in front of the payload columns: where the record came from, and for a
# record that failed, why (``kind`` is the envelope's bounded reason code) and its raw bytes.
DECODED_META_FIELDS: Final = (
    pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()),
    pa.field("offset", pa.int64()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("kind", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
)


def _arrow_type(info: msgspec.inspect.Type) -> tuple[pa.DataType, bool]:  # noqa: PLR0911
    """Arrow type of one msgspec field type, and whether it may be null."""
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(members) != 1:
            raise TypeError(f"unions other than Optional[T] have no column type: {info}")
        return _arrow_type(members[0])[0], True
    if isinstance(info, msgspec.inspect.FloatType):
        return pa.float64(), False
    if isinstance(info, msgspec.inspect.IntType):
        return pa.int64(), False
    if isinstance(info, (msgspec.inspect.StrType, msgspec.inspect.LiteralType)):
        return pa.string(), False
    if isinstance(info, msgspec.inspect.BoolType):
        return pa.bool_(), False
    if isinstance(info, msgspec.inspect.ListType):
        item, nullable = _arrow_type(info.item_type)
        return pa.list_(pa.field("item", item, nullable=nullable)), False
    if isinstance(info, msgspec.inspect.StructType):
        return pa.struct(_arrow_fields(info)), False
    raise TypeError(f"no column type for {info}")


def _arrow_fields(info: msgspec.inspect.StructType) -> list[pa.Field]:
    fields = []
    for field in info.fields:
        arrow, nullable = _arrow_type(field.type)
        fields.append(pa.field(field.encode_name, arrow, nullable=nullable or not field.required))
    return fields


@cache
def payload_arrow_type(topic: str) -> pa.StructType:
    """The Arrow struct of ``topic``'s payload, field for field."""
    info = msgspec.inspect.type_info(PAYLOADS[topic])
    assert isinstance(info, msgspec.inspect.StructType)
    return pa.struct(_arrow_fields(info))


@cache
def decoded_arrow_schema() -> pa.Schema:
    """Output of the decode step: metadata, then one nullable struct column per topic, named
    for the topic and set on that topic's valid records only."""
    payloads = [pa.field(topic, payload_arrow_type(topic)) for topic in PAYLOADS]
    return pa.schema([*DECODED_META_FIELDS, *payloads])


@dataclass(frozen=True, slots=True)
class Column:
    """One flattened payload field: its path in the payload and its column name in staging."""

    path: tuple[str, ...]
    arrow_type: pa.DataType

    @property
    def name(self) -> str:
        return "_".join(self.path)


@cache
def staging_columns(topic: str) -> tuple[Column, ...]:
    """The payload's leaves, nested structs flattened (``sentiment.score`` → sentiment_score)."""

    def leaves(struct: pa.StructType, prefix: tuple[str, ...]) -> list[Column]:
        found: list[Column] = []
        for field in struct:
            path = (*prefix, field.name)
            if pa.types.is_struct(field.type):
                found.extend(leaves(field.type, path))
            else:
                found.append(Column(path, field.type))
        return found

    return tuple(leaves(payload_arrow_type(topic), ()))


def spark_type(arrow: pa.DataType) -> DataType:
    """Spark's type for an Arrow type of the ones used here, every field nullable.

    Nullable throughout because a payload struct is null on the rows of other topics, and
    Spark's ``toArrow`` refuses a null struct whose children are declared non-null. What may be
    null within a payload is the envelope's business, already checked by the decode step.
    """
    from pyspark.sql import types as t  # noqa: PLC0415 - pyspark is an optional extra

    if pa.types.is_struct(arrow):
        return t.StructType([t.StructField(f.name, spark_type(f.type), True) for f in arrow])
    if pa.types.is_list(arrow):
        return t.ArrayType(spark_type(arrow.value_type), True)
    simple: dict[pa.DataType, DataType] = {
        pa.float64(): t.DoubleType(),
        pa.int64(): t.LongType(),
        pa.int32(): t.IntegerType(),
        pa.string(): t.StringType(),
        pa.binary(): t.BinaryType(),
        pa.bool_(): t.BooleanType(),
        pa.timestamp("us", tz="UTC"): t.TimestampType(),
    }
    return simple[arrow]


def spark_schema(schema: pa.Schema) -> StructType:
    from pyspark.sql import types as t  # noqa: PLC0415

    return t.StructType([t.StructField(f.name, spark_type(f.type), True) for f in schema])
