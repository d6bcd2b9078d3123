"""Envelope encode/decode rates per topic, and msgspec against pydantic on the same payloads.

Every figure is calls per second on one core, best of 3 loops. ``decode`` is what a consumer
calls per record (``shared.envelope.decode`` with the record's headers); a round trip is what one
record costs the pipeline: ``encode`` as producers call it (validated) plus that ``decode``.

The pydantic models are derived from the msgspec structs (``msgspec.inspect``), constraints
included, so both libraries check exactly the same contract and the payload fields keep a single
home in ``shared.envelope``.
"""

from __future__ import annotations

import functools
import json
import operator
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
from pydantic import BaseModel, ConfigDict, Field, create_model

from bench import _samples, _table
from bench._timing import best_rate
from shared.envelope import PAYLOADS, Payload, decode, encode

PRODUCER = "bench"


def pydantic_model(struct: type[msgspec.Struct]) -> type[BaseModel]:
    """A pydantic v2 model that accepts and rejects what the msgspec struct does."""
    info = mi.type_info(struct)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{struct.__name__} is not a msgspec struct")
    return _model(info)


# Frozen like the structs; unknown fields ignored like forbid_unknown_fields=False.
_MODEL_CONFIG = ConfigDict(frozen=True, extra="ignore")


def _model(info: mi.StructType) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for field in info.fields:
        alias = field.encode_name if field.encode_name != field.name else None
        if field.required:
            spec = Field(alias=alias)
        elif field.default_factory is not msgspec.NODEFAULT:
            spec = Field(default_factory=field.default_factory, alias=alias)
        else:
            spec = Field(default=field.default, alias=alias)
        fields[field.name] = (_annotation(field.type), spec)
    model: type[BaseModel] = create_model(info.cls.__name__, __config__=_MODEL_CONFIG, **fields)
    return model


def _constraints(kind: mi.Type, *names: str) -> dict[str, Any]:
    values = {name: getattr(kind, name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _annotation(kind: mi.Type) -> Any:  # noqa: PLR0911 - one return per msgspec type
    match kind:
        case mi.StrType():
            limits = _constraints(kind, "min_length", "max_length", "pattern")
            return Annotated[str, Field(**limits)]
        case mi.FloatType():
            # The structs refuse NaN and infinities in __post_init__; pydantic does it this way.
            limits = _constraints(kind, "gt", "ge", "lt", "le", "multiple_of")
            return Annotated[float, Field(allow_inf_nan=False, **limits)]
        case mi.IntType():
            limits = _constraints(kind, "gt", "ge", "lt", "le", "multiple_of")
            return Annotated[int, Field(**limits)]
        case mi.BoolType():
            return bool
        case mi.NoneType():
            return None
        case mi.LiteralType():
            return Literal[kind.values]
        case mi.ListType():
            limits = _constraints(kind, "min_length", "max_length")
            return Annotated[list[_annotation(kind.item_type)], Field(**limits)]  # type: ignore[misc]
        case mi.UnionType():
            return functools.reduce(operator.or_, (_annotation(member) for member in kind.types))
        case mi.StructType():
            return _model(kind)
    raise TypeError(f"no pydantic equivalent for {kind!r}; extend bench.envelope._annotation")


def _check_same_contract(payload: Payload, value: bytes, model: type[BaseModel]) -> None:
    """Refuse to compare libraries that would not return the same data for the same bytes."""
    expected = msgspec.to_builtins(decode(payload.topic, value))
    got = model.model_validate_json(value).model_dump(by_alias=True)
    if got != expected:
        raise RuntimeError(f"{payload.topic}: pydantic read {got!r}, msgspec {expected!r}")


def main(*, quick: bool = False) -> None:
    budget_s = 0.12 if quick else 0.9
    samples = _samples.one_per_topic()
    codec_rows: list[list[str]] = []
    versus_rows: list[list[str]] = []
    for topic, payload in samples.items():
        record = encode(payload, producer=PRODUCER)
        value, headers = record.value, record.headers
        model = pydantic_model(PAYLOADS[topic])
        _check_same_contract(payload, value, model)

        def round_trip(payload: Payload = payload) -> Payload:
            sent = encode(payload, producer=PRODUCER)
            return decode(sent.topic, sent.value, sent.headers)

        encode_checked = best_rate(
            functools.partial(encode, payload, producer=PRODUCER), budget_s=budget_s
        )
        encode_unchecked = best_rate(
            functools.partial(encode, payload, producer=PRODUCER, validate=False),
            budget_s=budget_s,
        )
        decoded = best_rate(functools.partial(decode, topic, value, headers), budget_s=budget_s)
        both = best_rate(round_trip, budget_s=budget_s)
        codec_rows.append(
            [
                topic,
                _table.count(len(value)),
                _table.count(encode_checked),
                _table.count(encode_unchecked),
                _table.count(decoded),
                _table.count(both),
            ]
        )

        def pydantic_loads(value: bytes = value, model: type[BaseModel] = model) -> BaseModel:
            return model.model_validate(json.loads(value))

        # The envelope's decoder without the envelope's checks around it (size, headers).
        bare = best_rate(
            functools.partial(msgspec.json.Decoder(PAYLOADS[topic]).decode, value),
            budget_s=budget_s,
        )
        with_loads = best_rate(pydantic_loads, budget_s=budget_s)
        from_json = best_rate(
            functools.partial(model.model_validate_json, value), budget_s=budget_s
        )
        versus_rows.append(
            [
                topic,
                _table.count(decoded),
                _table.count(bare),
                _table.count(with_loads),
                _table.count(from_json),
                f"{decoded / with_loads:.1f}x",
                f"{decoded / from_json:.1f}x",
            ]
        )

    print(
        _table.render(
            "Envelope codec (calls/s, one core, best of 3)",
            ["topic", "value B", "encode", "encode no-validate", "decode", "round trip"],
            codec_rows,
        )
    )
    print()
    print(
        _table.render(
            "Decode: msgspec vs pydantic v2, same bytes and constraints (calls/s;"
            " ratios: envelope.decode over pydantic)",
            [
                "topic",
                "envelope.decode",
                "msgspec Decoder",
                "json.loads+pydantic",
                "pydantic from JSON",
                "vs loads",
                "vs from JSON",
            ],
            versus_rows,
        )
    )
