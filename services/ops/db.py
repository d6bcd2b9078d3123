"""``cryptoviz db``: apply the schema migrations and say where a database stands.

The work is in :mod:`shared.db.migrate`; this module connects with the operator's settings and
turns every failure into one line with the DSN redacted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]  # no type information shipped

from services.ops.errors import OperationFailed
from shared.db.migrate import MigrationError, load_migrations, migrate, schema_status
from shared.logs import redact_url_passwords
from shared.settings import Settings


def secretless(exc: BaseException, dsn: str) -> str:
    """An exception's message on one line, without the DSN's password wherever it appears."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(dsn).password
    if password:
        text = text.replace(password, "***")
    return redact_url_passwords(text)


@asynccontextmanager
async def connected(settings: Settings, timeout_s: float) -> AsyncIterator[Any]:
    dsn = settings.db_dsn.get_secret_value()
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one line for the operator
        raise OperationFailed(
            f"cannot connect to {settings.db_dsn_redacted}: {secretless(exc, dsn)}"
        ) from None
    try:
        yield connection
    except (OperationFailed, MigrationError):
        raise
    except (asyncpg.PostgresError, OSError) as exc:
        raise OperationFailed(f"{settings.db_dsn_redacted}: {secretless(exc, dsn)}") from None
    finally:
        await connection.close(timeout=timeout_s)


async def db_status(settings: Settings, *, timeout_s: float = 10.0) -> dict[str, Any]:
    async with connected(settings, timeout_s) as connection:
        status = await schema_status(connection)
    return {"database": settings.db_dsn_redacted, **status.as_dict(), "problem": status.problem()}


async def db_migrate(
    settings: Settings, *, dry_run: bool = False, roles: bool = False, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Apply what is pending (``dry_run``: only say what would be), as a JSON-ready summary."""
    dsn = settings.db_dsn.get_secret_value()
    try:
        migrations = load_migrations()
    except MigrationError as exc:
        raise OperationFailed(str(exc)) from None
    async with connected(settings, timeout_s) as connection:
        try:
            if dry_run:
                status = await schema_status(connection, migrations)
                problem = status.problem() if status.changed or status.unknown else None
                if problem is not None:
                    raise OperationFailed(problem)
                return {
                    "database": settings.db_dsn_redacted,
                    "dry_run": True,
                    "current": status.current,
                    "latest": status.latest,
                    "pending": [m.filename for m in status.pending],
                    "roles": roles,
                    "applied": [],
                }
            result = await migrate(connection, roles=roles, migrations=migrations)
        except MigrationError as exc:
            raise OperationFailed(f"{settings.db_dsn_redacted}: {secretless(exc, dsn)}") from None
    return {
        "database": settings.db_dsn_redacted,
        "dry_run": False,
        "current": result.status.current,
        "latest": result.status.latest,
        "pending": [m.filename for m in result.status.pending],
        "roles": result.roles_applied,
        "applied": [m.filename for m in result.applied],
    }


def migrate_lines(summary: dict[str, Any]) -> list[str]:
    """What ``cryptoviz db migrate`` prints for people."""
    lines: list[str] = []
    if summary["dry_run"]:
        lines += [f"would apply {name}" for name in summary["pending"]]
        if summary["roles"]:
            lines.append("would apply roles.sql (idempotent)")
        if not summary["pending"]:
            lines.append(f"schema version {summary['current']} is the latest: nothing to apply")
        else:
            lines.append(
                f"dry run: schema version {summary['current']}, would migrate to "
                f"{summary['latest']}; nothing applied"
            )
        return lines
    lines += [f"applied {name}" for name in summary["applied"]]
    if summary["roles"]:
        lines.append("applied roles.sql (cryptoviz_writer, cryptoviz_reader)")
    if summary["applied"]:
        lines.append(f"schema version {summary['current']} (latest)")
    else:
        lines.append(f"schema version {summary['current']} is the latest: nothing to apply")
    return lines


def status_lines(status: dict[str, Any]) -> list[str]:
    """What ``cryptoviz db status`` prints for people."""
    timescale = status["timescaledb"]
    extension = (
        "installed"
        if timescale["installed"]
        else "available, not installed"
        if timescale["available"]
        else "not available (plain PostgreSQL: views stand in for continuous aggregates)"
    )
    lines = [
        f"database: {status['database']}",
        f"schema version: {status['current']} (latest {status['latest']})",
        f"pending: {', '.join(status['pending']) or 'none'}",
        f"timescaledb: {extension}",
    ]
    if status["problem"] and not status["pending"]:
        lines.append(f"problem: {status['problem']}")
    return lines
