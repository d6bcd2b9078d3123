"""Versioned schema migrations: SQL files shipped in ``shared.db.migrations``, applied in order.

- ``NNNN_name.sql`` files are the migrations, versions 1, 2, ... without gaps. Each one runs in its
  own transaction together with its row in ``schema_migrations``, so a failure leaves the schema
  at the previous version, never half way.
- A session-level advisory lock serialises concurrent runs (two deploys, two daemons starting):
  the second waits, then finds everything applied and does nothing.
- The checksum (SHA-256 of the file) of every applied migration is compared with the file shipped:
  an applied migration that changed is an error naming the file. Changes go in a new migration.
- ``roles.sql`` (least-privilege group roles) is optional and idempotent: applied on request,
  again on every request, and not a version of the schema.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any, Final

import asyncpg

PACKAGE: Final = "shared.db.migrations"
ROLES_FILE: Final = "roles.sql"
# Any fixed bigint; shared by every process that migrates, whatever its code version.
LOCK_KEY: Final = 0x43525950544F5649  # "CRYPTOVI"

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The schema cannot be brought to this build's version; the message says why."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    filename: str
    sql: str
    checksum: str


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(slots=True)
class SchemaStatus:
    """Where a database stands against the migrations of this build."""

    current: int
    latest: int
    pending: list[Migration]
    # Filenames of applied migrations whose file is not what was applied.
    changed: list[str]
    # Applied versions this build does not know: the database is newer than the code.
    unknown: list[int]
    timescaledb_available: bool
    timescaledb_installed: bool
    applied: list[AppliedMigration] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.changed and not self.unknown

    def problem(self) -> str | None:
        """One sentence on what is wrong, or None when the schema is what this build expects."""
        if self.changed:
            return (
                f"{', '.join(self.changed)} changed after being applied (checksum differs); "
                "restore the file and put the change in a new migration"
            )
        if self.unknown:
            return (
                f"the database has schema version {max(self.unknown)}, newer than this build's "
                f"{self.latest}: upgrade cryptoviz"
            )
        if self.pending:
            count = len(self.pending)
            return (
                f"{count} migration{'s' if count != 1 else ''} pending "
                "(`cryptoviz db migrate` applies them)"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "latest": self.latest,
            "up_to_date": self.up_to_date,
            "pending": [m.filename for m in self.pending],
            "changed": self.changed,
            "unknown": self.unknown,
            "timescaledb": {
                "available": self.timescaledb_available,
                "installed": self.timescaledb_installed,
            },
            "applied": [
                {"version": a.version, "name": a.name, "applied_at": a.applied_at.isoformat()}
                for a in self.applied
            ],
        }


@dataclass(frozen=True, slots=True)
class MigrateResult:
    applied: list[Migration]
    roles_applied: bool
    status: SchemaStatus


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def load_migrations() -> tuple[Migration, ...]:
    """The migrations shipped with this build, by version."""
    found: list[Migration] = []
    for entry in resources.files(PACKAGE).iterdir():
        match = _FILENAME.match(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                filename=entry.name,
                sql=sql,
                checksum=_checksum(sql),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        # A packaging mistake, not an operator's: refuse before touching any database.
        raise MigrationError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)


def load_roles() -> str:
    return resources.files(PACKAGE).joinpath(ROLES_FILE).read_text(encoding="utf-8")


async def schema_status(
    connection: Any, migrations: tuple[Migration, ...] | None = None
) -> SchemaStatus:
    """Read-only: what is applied, what is pending, whether TimescaleDB is there."""
    migrations = load_migrations() if migrations is None else migrations
    applied: list[AppliedMigration] = []
    if await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        rows = await connection.fetch(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
        )
        applied = [
            AppliedMigration(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows
        ]
    by_version = {a.version: a for a in applied}
    known = {m.version for m in migrations}
    extension = await connection.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
        "AS available, "
        "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS installed"
    )
    return SchemaStatus(
        current=max((a.version for a in applied if a.version in known), default=0),
        latest=len(migrations),
        pending=[m for m in migrations if m.version not in by_version],
        changed=[
            m.filename
            for m in migrations
            if m.version in by_version and by_version[m.version].checksum != m.checksum
        ],
        unknown=sorted(v for v in by_version if v not in known),
        timescaledb_available=bool(extension["available"]),
        timescaledb_installed=bool(extension["installed"]),
        applied=applied,
    )


async def migrate(
    connection: Any,
    *,
    roles: bool = False,
    migrations: tuple[Migration, ...] | None = None,
) -> MigrateResult:
    """Apply every pending migration (and ``roles.sql`` when asked), each in a transaction.

    Safe to run twice and concurrently. Raises :class:`MigrationError` when an applied migration
    changed or the database is newer than this build; nothing is applied then.
    """
    migrations = load_migrations() if migrations is None else migrations
    # Session-level, not transaction-level: it must span the several transactions below.
    await connection.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await connection.execute(_CREATE_TABLE)
        status = await schema_status(connection, migrations)
        problem = None if not (status.changed or status.unknown) else status.problem()
        if problem is not None:
            raise MigrationError(problem)
        for migration in status.pending:
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise MigrationError(f"{migration.filename} failed: {reason}") from exc
        if roles:
            try:
                async with connection.transaction():
                    await connection.execute(load_roles())
            except Exception as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise MigrationError(f"{ROLES_FILE} failed: {reason}") from exc
        after = await schema_status(connection, migrations)
    finally:
        # A lost connection has released the lock with itself.
        if not connection.is_closed():
            await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return MigrateResult(applied=list(status.pending), roles_applied=roles, status=after)


async def migrate_dsn(dsn: str, *, roles: bool = False) -> MigrateResult:
    """:func:`migrate` on a connection of its own to ``dsn`` (fixtures, benchmarks, scripts)."""
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection, roles=roles)
    finally:
        await connection.close()
