"""``cryptoviz health``: is everything the pipeline needs there and answering?

Checks, each bounded by its own timeout and run concurrently:

- ``broker``: Kafka reachable; every broker's ApiVersions, with the APIs this project uses;
- ``topics``: every registry topic exists with the partitions and configs it asks for;
- ``database``: ``CRYPTOVIZ_DB_DSN`` accepts a connection, and its schema is this build's latest
  version (fails while migrations are pending, or when an applied one changed);
- ``daemon <name>``: each daemon of ``CRYPTOVIZ_HEALTH_DAEMONS`` answers 200 on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import aiohttp
import asyncpg  # type: ignore[import-untyped,unused-ignore]  # no type information shipped
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import ApiVersionRequest

from services.ops.db import secretless
from services.ops.offsets import kafka_reason
from services.ops.settings import OpsSettings
from shared.db.migrate import schema_status
from shared.kafka_config import aiokafka_common
from shared.topics import TopicAdmin, TopicError, topic_specs

CHECKS: Final = ("broker", "topics", "database", "daemons")

# Kafka API keys by name (the protocol's table), for what the broker check prints.
API_NAMES: Final = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup",
    14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups", 17: "SaslHandshake",
    18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics", 21: "DeleteRecords",
    22: "InitProducerId", 23: "OffsetForLeaderEpoch", 24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit", 29: "DescribeAcls",
    30: "CreateAcls", 31: "DeleteAcls", 32: "DescribeConfigs", 33: "AlterConfigs",
    35: "DescribeLogDirs", 36: "SaslAuthenticate", 37: "CreatePartitions", 42: "DeleteGroups",
    43: "ElectLeaders", 44: "IncrementalAlterConfigs", 47: "OffsetDelete", 50:
    "DescribeUserScramCredentials", 51: "AlterUserScramCredentials", 60: "DescribeCluster",
    61: "DescribeProducers", 65: "DescribeTransactions", 66: "ListTransactions",
    68: "ConsumerGroupHeartbeat", 69: "ConsumerGroupDescribe", 71: "GetTelemetrySubscriptions",
    72: "PushTelemetry", 75: "DescribeTopicPartitions",
}  # fmt: skip
# What the daemons and this CLI send: producing, group consumption, topic provisioning.
REQUIRED_APIS: Final = (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 32, 44)
# Printed on the one-line answer; --json has every API.
SHOWN_APIS: Final = (0, 1, 2, 3, 8, 9, 11, 44)


@dataclass(slots=True)
class CheckResult:
    name: str
    ok: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "reason": self.reason, "details": self.details}


def _api_name(key: int) -> str:
    return API_NAMES.get(key, f"api-{key}")


async def check_broker(settings: OpsSettings, timeout_s: float) -> CheckResult:
    client = AIOKafkaClient(
        **aiokafka_common(settings),
        client_id=f"{settings.kafka_client_id}-health",
    )
    try:
        await client.bootstrap()
        brokers = sorted(client.cluster.brokers(), key=lambda b: b.nodeId)
        versions: dict[int, dict[int, tuple[int, int]]] = {}
        for broker in brokers:
            response = await client.send(broker.nodeId, ApiVersionRequest())
            if response.error_code:
                return CheckResult(
                    "broker",
                    False,
                    f"broker {broker.nodeId} answered ApiVersions with error {response.error_code}",
                )
            versions[broker.nodeId] = {
                int(key): (int(low), int(high)) for key, low, high in response.api_versions
            }
    except KafkaError as exc:
        return CheckResult(
            "broker",
            False,
            f"cannot reach Kafka at {settings.kafka_bootstrap}: {kafka_reason(exc)}",
        )
    finally:
        await client.close()
    details = {
        "bootstrap": settings.kafka_bootstrap,
        "brokers": {
            str(node): {
                _api_name(k): {"min": lo, "max": hi} for k, (lo, hi) in sorted(apis.items())
            }
            for node, apis in versions.items()
        },
    }
    missing = sorted(
        {_api_name(k) for apis in versions.values() for k in REQUIRED_APIS if k not in apis}
    )
    if missing:
        return CheckResult("broker", False, f"the broker lacks {', '.join(missing)}", details)
    # The lowest maximum across brokers is what every client can count on.
    shown = ", ".join(
        f"{_api_name(k)} v{min(apis[k][1] for apis in versions.values())}" for k in SHOWN_APIS
    )
    count = f"{len(versions)} broker{'s' if len(versions) != 1 else ''}"
    return CheckResult(
        "broker", True, f"{settings.kafka_bootstrap} reachable, {count}; {shown}", details
    )


async def check_topics(settings: OpsSettings, timeout_s: float) -> CheckResult:
    specs = topic_specs(settings)
    try:
        states = await TopicAdmin(settings, timeout_s=timeout_s).describe(specs)
    except TopicError as exc:
        return CheckResult("topics", False, str(exc))
    problems: list[str] = []
    for name, spec in specs.items():
        state = states.get(name)
        if state is None:
            problems.append(f"{name} missing")
            continue
        if state.partitions < spec.partitions:
            problems.append(f"{name} has {state.partitions} partitions, {spec.partitions} wanted")
        problems += [
            f"{name} {key}={state.configs.get(key, '(default)')} (wanted {wanted})"
            for key, wanted in spec.configs.items()
            if state.configs.get(key) != wanted
        ]
    details = {"topics": sorted(states), "problems": problems}
    if problems:
        return CheckResult(
            "topics",
            False,
            f"{'; '.join(problems)} (`cryptoviz topics ensure` fixes these)",
            details,
        )
    return CheckResult(
        "topics", True, f"{', '.join(specs)} present with the wanted configs", details
    )


async def check_database(settings: OpsSettings, timeout_s: float) -> CheckResult:
    dsn = settings.db_dsn.get_secret_value()
    where = settings.db_dsn_redacted
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is this check's answer
        return CheckResult("database", False, f"cannot connect to {where}: {secretless(exc, dsn)}")
    try:
        version = await connection.fetchval("SHOW server_version", timeout=timeout_s)
        status = await schema_status(connection)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("database", False, f"{where} does not answer: {secretless(exc, dsn)}")
    finally:
        await connection.close(timeout=timeout_s)
    details = {
        "dsn": where,
        "server_version": str(version),
        "schema_version": status.current,
        "latest_schema_version": status.latest,
        "pending": [m.filename for m in status.pending],
        "timescaledb": status.timescaledb_installed,
    }
    reason = f"{where} reachable, schema version {status.current} (latest {status.latest})"
    problem = status.problem()
    if problem is not None:
        return CheckResult("database", False, f"{reason}: {problem}", details)
    return CheckResult("database", True, f"{reason}, PostgreSQL {version}", details)


async def check_daemon(name: str, url: str, timeout_s: float) -> CheckResult:
    check = f"daemon {name}"
    target = f"{url}/readyz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(target) as response,
        ):
            body = await response.text()
            status = response.status
    except TimeoutError:
        return CheckResult(check, False, f"{target}: no answer within {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return CheckResult(
            check, False, f"{target}: {' '.join(str(exc).split()) or type(exc).__name__}"
        )
    if status == 200:
        return CheckResult(check, True, f"{target} ready", {"url": target, "status": status})
    return CheckResult(
        check,
        False,
        f"{target} answered {status}{_not_ready(body)}",
        {"url": target, "status": status},
    )


def _not_ready(body: str) -> str:
    try:
        checks = json.loads(body).get("checks", {})
    except (ValueError, AttributeError):
        return ""
    failing = [name for name, ok in checks.items() if not ok] if isinstance(checks, dict) else []
    return f" (not ready: {', '.join(failing)})" if failing else ""


async def run_checks(
    settings: OpsSettings, *, skip: Collection[str] = (), timeout_s: float = 5.0
) -> list[CheckResult]:
    """Every check not skipped, concurrently, in a stable order."""
    planned: list[tuple[str, Callable[[], Awaitable[CheckResult]]]] = []
    if "broker" not in skip:
        planned.append(("broker", partial(check_broker, settings, timeout_s)))
    if "topics" not in skip:
        planned.append(("topics", partial(check_topics, settings, timeout_s)))
    if "database" not in skip:
        planned.append(("database", partial(check_database, settings, timeout_s)))
    if "daemons" not in skip:
        planned += [
            (f"daemon {name}", partial(check_daemon, name, url, timeout_s))
            for name, url in settings.health_daemons.items()
        ]
    return list(await asyncio.gather(*(_bounded(name, run, timeout_s) for name, run in planned)))


async def _bounded(
    name: str, run: Callable[[], Awaitable[CheckResult]], timeout_s: float
) -> CheckResult:
    # A little more than the check's own timeout: its own message is the better one.
    try:
        return await asyncio.wait_for(run(), timeout_s + 1.0)
    except TimeoutError:
        return CheckResult(name, False, f"no answer within {timeout_s:g} s")
