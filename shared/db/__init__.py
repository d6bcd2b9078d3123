"""The database schema: versioned SQL migrations and the runner that applies them."""

from shared.db.migrate import (
    MigrateResult,
    Migration,
    MigrationError,
    SchemaStatus,
    load_migrations,
    migrate,
    schema_status,
)

__all__ = [
    "MigrateResult",
    "Migration",
    "MigrationError",
    "SchemaStatus",
    "load_migrations",
    "migrate",
    "schema_status",
]
