"""The job's one transformation: Kafka records in, typed payloads or dead letters out.

Runs on the executors through ``mapInArrow`` and decodes with ``shared.envelope.decode``, the very
function every consumer of the project uses: a record the job accepts is one the contract accepts,
constraints included (positive prices, score range, the pair pattern), which Spark's ``from_json``
would not check. Both Kafka sources, the native one and the Python one, feed this same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pyarrow as pa

from services.spark.schemas import decoded_arrow_schema
from shared.envelope import PAYLOADS, EnvelopeError, decode


def decode_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Decode one batch of Kafka-source rows into the decoded schema (``schemas``)."""
    schema = decoded_arrow_schema()
    topics = batch.column("topic").to_pylist()
    values = batch.column("value").to_pylist()
    keys = batch.column("key").to_pylist()
    headers = batch.column("headers").to_pylist() if "headers" in batch.schema.names else None
    size = len(topics)
    kinds: list[str | None] = [None] * size
    reasons: list[str | None] = [None] * size
    raw_keys: list[bytes | None] = [None] * size
    raw_values: list[bytes | None] = [None] * size
    payloads: dict[str, list[Any]] = {topic: [None] * size for topic in PAYLOADS}
    for i in range(size):
        topic = topics[i]
        pairs = [(h["key"], h["value"] or b"") for h in headers[i] or ()] if headers else ()
        try:
            payload = decode(topic, values[i], pairs)
        except EnvelopeError as exc:
            kinds[i] = exc.kind
            reasons[i] = str(exc)
            raw_keys[i] = keys[i]
            raw_values[i] = values[i]
            continue
        payloads[topic][i] = msgspec.to_builtins(payload)
    columns = [
        batch.column("topic"),
        batch.column("partition"),
        batch.column("offset"),
        batch.column("timestamp"),
        pa.array(kinds, pa.string()),
        pa.array(reasons, pa.string()),
        pa.array(raw_keys, pa.binary()),
        pa.array(raw_values, pa.binary()),
        *(pa.array(payloads[topic], schema.field(topic).type) for topic in PAYLOADS),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def decode_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` entry point."""
    for batch in batches:
        yield decode_batch(batch)
