"""``cryptoviz lag``: how far each consumer group is behind, per topic.

Lag is the fetch high watermark (the true log end; see ``services.ops.offsets``) minus the
committed offset, summed over the partitions the group has committed on. Partitions without a
committed offset have no lag to report (the group has not started there), as in Kafka's tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ops.groups import SEED_GROUPS, GroupAdmin, PartitionOffsets


async def lag_rows(admin: GroupAdmin, extra_groups: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (group, topic): the seed groups, then ``extra_groups``.

    A seed group the broker does not know yet gets one row saying so; an unknown group asked for
    by name is an error.
    """
    known = set(await admin.names())
    rows: list[dict[str, Any]] = []
    for group in dict.fromkeys([*SEED_GROUPS, *extra_groups]):
        if group not in known:
            if group not in extra_groups:
                rows.append(_row(group, "absent", None, []))
                continue
            await admin.require(group)
        info = await admin.describe(group)
        partitions = await admin.partition_offsets(group, info)
        if not partitions:
            rows.append(_row(group, info.state, None, []))
            continue
        for topic in dict.fromkeys(p.topic for p in partitions):
            rows.append(_row(group, info.state, topic, [p for p in partitions if p.topic == topic]))
    return rows


def _row(
    group: str, state: str, topic: str | None, partitions: list[PartitionOffsets]
) -> dict[str, Any]:
    committed = [p for p in partitions if p.committed is not None]
    return {
        "group": group,
        "state": state,
        "topic": topic,
        "partitions": len(partitions),
        "committed": sum(p.committed or 0 for p in committed) if committed else None,
        "end": sum(p.high for p in partitions) if partitions else None,
        "lag": sum(p.lag or 0 for p in committed) if committed else None,
    }
