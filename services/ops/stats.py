"""``cryptoviz topics stats``: per-partition offsets, record counts and the current message rate.

Method: the partition's watermarks are read twice, ``interval`` seconds apart (high watermark from
a fetch, the true log end; see ``services.ops.offsets``). The rate is the growth of the high
watermark between the two reads divided by the monotonic time elapsed between them: records
appended per second during the sampling window, whatever consumes them. ``records`` is
high - low (exact with the delete cleanup policy; Kafka's transaction markers would count too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition

from services.ops.errors import OperationFailed
from services.ops.offsets import OffsetReader
from shared.settings import Settings
from shared.topics import topic_specs


async def topic_stats(
    reader: OffsetReader, settings: Settings, topics: Sequence[str], *, interval_s: float
) -> dict[str, Any]:
    """Rows per partition of ``topics`` (default: the registry's topics the broker has)."""
    if not topics:
        present = await reader.topics()
        topics = [name for name in topic_specs(settings) if name in present]
        if not topics:
            raise OperationFailed("no registry topic exists yet; run `cryptoviz topics ensure`")
    partitions = await reader.partitions(topics)
    if not partitions:
        raise OperationFailed("no partitions to measure")
    first = await reader.watermarks(partitions)
    started = time.monotonic()
    last = first
    rates: dict[TopicPartition, float | None] = dict.fromkeys(partitions)
    if interval_s > 0:
        await asyncio.sleep(interval_s)
        last = await reader.watermarks(partitions)
        elapsed = time.monotonic() - started
        rates = {tp: round((last[tp].high - first[tp].high) / elapsed, 2) for tp in partitions}
    rows = [
        {
            "topic": tp.topic,
            "partition": tp.partition,
            "low": last[tp].low,
            "high": last[tp].high,
            "records": last[tp].records,
            "rate_per_s": rates[tp],
        }
        for tp in partitions
    ]
    return {"interval_s": interval_s, "partitions": rows}
