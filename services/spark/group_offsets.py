"""The job's consumer group on the broker, and how it relates to the Spark checkpoint.

Spark restarts a query from its checkpoint, not from a consumer group. The job still commits every
stored batch's offsets to its group (``spark-job-ingestion``) so Kafka's tooling sees its lag, and
it honours the group at start: an operator who moved the group (``cryptoviz groups reset``, or
Kafka's own tool) means "read from there". So, at start:

- no checkpoint: start from the group's offsets, or the starting strategy where it has none;
- a checkpoint whose last committed batch ended where the group is: resume from the checkpoint;
- a checkpoint that disagrees with the group, or a group with no offsets at all (deleted,
  expired, lost with the broker's state): the group wins, the checkpoint is set aside.

The group can also trail the checkpoint by one batch (a crash between Spark's commit and the
group's): the rule above then re-reads that batch, which the idempotent writes make harmless.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Offsets = dict[str, dict[str, int]]


class GroupOffsetsError(RuntimeError):
    pass


def _admin(config: Mapping[str, Any]) -> Any:
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - loaded where it runs

    return AdminClient(dict(config))


def committed_offsets(
    config: Mapping[str, Any], group: str, topics: Sequence[str], *, timeout_s: float = 10.0
) -> Offsets:
    """The group's committed offsets on every partition of ``topics`` (those it has one on)."""
    from confluent_kafka import (  # noqa: PLC0415
        ConsumerGroupTopicPartitions,
        KafkaException,
        TopicPartition,
    )

    admin = _admin(config)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        if not partitions:
            return {}
        request = ConsumerGroupTopicPartitions(group, partitions)
        future = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[group]
        # The request timeout does not bound every wait (the embedded broker leaves some group
        # requests unanswered): the future's own timeout does.
        result = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise GroupOffsetsError(
            f"no answer about the offsets of group {group} within {timeout_s:g} s"
        ) from None
    except KafkaException as exc:
        reason = exc.args[0]
        raise GroupOffsetsError(f"cannot read the offsets of group {group}: {reason}") from None
    offsets: Offsets = {}
    for tp in result.topic_partitions:
        if tp.error is None and tp.offset >= 0:
            offsets.setdefault(tp.topic, {})[str(tp.partition)] = int(tp.offset)
    return offsets


class GroupCommitter:
    """Commits offsets for the group without joining it, as a "simple consumer" does.

    Kafka accepts such commits (generation -1) for a group with no members, which the job's group
    is: it reads by assignment. The admin API's AlterConsumerGroupOffsets would do the same on
    Apache Kafka, but the embedded broker (Tansu 0.6) never answers it for a group it does not
    know yet, and confluent's request timeout does not cut that wait short.
    """

    def __init__(self, config: Mapping[str, Any], group: str, *, timeout_s: float = 10.0) -> None:
        from confluent_kafka import Consumer  # noqa: PLC0415 - loaded where it runs

        self.group = group
        self._consumer = Consumer(
            {
                **config,
                "group.id": group,
                "enable.auto.commit": False,
                "socket.timeout.ms": int(timeout_s * 1000),
            }
        )

    def commit(self, offsets: Offsets) -> None:
        from confluent_kafka import KafkaException, TopicPartition  # noqa: PLC0415

        partitions = [
            TopicPartition(topic, int(p), offset)
            for topic, parts in offsets.items()
            for p, offset in parts.items()
        ]
        if not partitions:
            return
        try:
            result = self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            raise GroupOffsetsError(f"cannot commit group {self.group}: {exc.args[0]}") from None
        failed = [f"{tp.topic}-{tp.partition}" for tp in result or () if tp.error]
        if failed:
            raise GroupOffsetsError(f"cannot commit group {self.group} on {', '.join(failed)}")

    def close(self) -> None:
        self._consumer.close()


def last_committed_batch(checkpoint: Path) -> tuple[int, Offsets] | None:
    """The id and end offsets of the checkpoint's last committed batch, if any.

    Spark writes ``offsets/<id>`` (a version line, a metadata line, then one line of offsets JSON
    per source) when it plans a batch and ``commits/<id>`` once the sink finished it.
    """
    commits = checkpoint / "commits"
    ids = sorted(int(p.name) for p in commits.glob("*") if p.name.isdigit())
    if not ids:
        return None
    lines = (checkpoint / "offsets" / str(ids[-1])).read_text().splitlines()
    source = json.loads(lines[2])
    return ids[-1], {t: {p: int(o) for p, o in parts.items()} for t, parts in source.items()}


def disagreement(group: Offsets, checkpointed: Offsets) -> list[str]:
    """Partitions where the group's offset is not where the checkpoint's last batch ended."""
    return [
        f"{topic}-{p}: group {offset}, checkpoint {checkpointed.get(topic, {}).get(p)}"
        for topic, parts in group.items()
        for p, offset in parts.items()
        if checkpointed.get(topic, {}).get(p) != offset
    ]


def reconcile(checkpoint: Path, group: Offsets, group_name: str) -> bool:
    """Apply the module's rule; True when the checkpoint was set aside for the group's offsets."""
    last = last_committed_batch(checkpoint)
    if last is None:
        return False
    batch_id, checkpointed = last
    if group:
        differ = disagreement(group, checkpointed)
        if not differ:
            return False
        reason = "consumer group offsets moved since the last batch"
    else:
        # Deleted by an operator, expired, or gone with a broker that lost its state (the
        # embedded one keeps nothing across restarts, and its logs restart at 0, below the
        # checkpoint): the checkpoint's offsets no longer say where this data starts.
        differ = []
        reason = "consumer group has no committed offsets"
    aside = checkpoint.with_name(f"{checkpoint.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
    log.warning(
        f"{reason}: starting from the group's offsets",
        group=group_name,
        checkpoint_batch=batch_id,
        partitions=differ[:10],
        checkpoint_set_aside=str(aside),
    )
    shutil.move(checkpoint, aside)
    _prune_replaced(checkpoint, keep=3)
    return True


def _prune_replaced(checkpoint: Path, *, keep: int) -> None:
    old = sorted(checkpoint.parent.glob(f"{checkpoint.name}.replaced-*"))
    for path in old[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
