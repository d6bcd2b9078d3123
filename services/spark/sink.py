"""Where a micro-batch lands: PostgreSQL (TimescaleDB) in one transaction, then the group offsets.

Per batch, on the driver:

1. each topic's valid payloads are COPYed (binary) into a temporary staging table whose columns
   are the payload's flattened fields (``schemas.staging_columns``), then moved with
   ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the table of that topic: a record seen
   before, in this batch or any other, changes nothing;
2. records that failed to decode go to ``dead_letters``, keyed by topic, partition and offset (a
   redelivered bad record is still one row);
3. all of it commits as one transaction, and only then are the batch's offsets committed to the
   consumer group, so the group never runs ahead of the database and lag is what Kafka's own tools
   show.

A row the database refuses although the envelope accepted it (a constraint the contract does not
know) would otherwise fail the batch forever: that topic's rows are then retried one by one, each
in a savepoint, and the refused ones become dead letters of kind ``db_rejected``.

A database that goes away is waited out: connection failures are retried with capped backoff for
``retry_for_s``, after which the batch fails (and the query with it, for the wrapper to restart).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from services.spark.schemas import Column, staging_columns
from shared.backoff import full_jitter_backoff

log = structlog.get_logger(__name__)

DEAD_LETTER_KIND_DB: Final = "db_rejected"


@dataclass(frozen=True, slots=True)
class TableMapping:
    """How one topic's staged payloads become rows of its table."""

    topic: str
    table: str
    # Target column → SQL expression over the staging columns.
    columns: tuple[tuple[str, str], ...]

    def insert_sql(self, staging: str) -> str:
        targets = ", ".join(name for name, _ in self.columns)
        sources = ", ".join(expr for _, expr in self.columns)
        # Identifiers from the constants below, never from data.
        return (
            f"INSERT INTO {self.table} ({targets}) SELECT {sources} FROM {staging} "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )


def _ts(column: str) -> str:
    # Payload times are float epoch seconds; the tables keep timestamptz.
    return f"to_timestamp({column})"


MAPPINGS: Final = {
    m.topic: m
    for m in (
        TableMapping(
            "rawticker",
            "ticker_data",
            (
                ("pair", "pair"),
                ("ts", _ts("timestamp")),
                ("last", "last"),
                ("bid", "bid"),
                ("ask", "ask"),
                ("volume_24h", "volume_24h"),
                ("pct_change", "pct_change"),
            ),
        ),
        TableMapping(
            "rawtrade",
            "trade_data",
            (
                ("pair", "pair"),
                ("ts", _ts("timestamp")),
                ("trade_id", "trade_id"),
                ("price", "price"),
                ("volume", "volume"),
                ("side", "side"),
            ),
        ),
        TableMapping(
            "rawalert",
            "alert_data",
            (
                ("pair", "pair"),
                ("type", "type"),
                ("ts", _ts("timestamp")),
                ("last", "last"),
                ("change", "change"),
                ("threshold", "threshold"),
                ("window_s", "window_s"),
            ),
        ),
        TableMapping(
            "rawarticle",
            "article_data",
            (
                ("id", "id"),
                ("url", "url"),
                ("website", "website"),
                ("title", "title"),
                ("summary", "summary"),
                ("content_text", "content_text"),
                ("published_at", _ts("published_at")),
                ("scraped_at", _ts("scraped_at")),
                ("tags", "tags"),
                ("sentiment_score", "sentiment_score"),
                ("sentiment_label", "sentiment_label"),
                ("cryptocurrencies_mentioned", "cryptocurrencies_mentioned"),
            ),
        ),
    )
}

# Failures that say the database is unreachable or restarting, not that the batch is wrong.
DATABASE_AWAY: Final = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def _pg_type(arrow: pa.DataType) -> str:
    if pa.types.is_list(arrow):
        return f"{_pg_type(arrow.value_type)}[]"
    return {
        pa.float64(): "double precision",
        pa.int64(): "bigint",
        pa.int32(): "integer",
        pa.string(): "text",
        pa.binary(): "bytea",
        pa.bool_(): "boolean",
    }[arrow]


def staging_table(topic: str) -> str:
    return f"stage_{topic}"


def staging_ddl(topic: str) -> str:
    columns = ", ".join(f"{c.name} {_pg_type(c.arrow_type)}" for c in staging_columns(topic))
    # Temporary, per connection, emptied at every commit: nothing to clean up after a crash.
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging_table(topic)} ({columns}) "
        "ON COMMIT DELETE ROWS"
    )


@dataclass(slots=True)
class BatchResult:
    """What one batch did, for the job's progress line and the wrapper's metrics."""

    batch_id: int
    rows_in: int = 0
    written: Counter[str] = field(default_factory=Counter)  # new rows per table
    duplicates: Counter[str] = field(default_factory=Counter)  # rows already there, per table
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)  # per topic, kind
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # committed to the group
    group_committed: bool = False
    db_attempts: int = 0
    write_s: float = 0.0
    event_lag_s: float | None = None  # now minus the oldest record's event time, at commit

    def as_event(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "rows_in": self.rows_in,
            "written": dict(self.written),
            "duplicates": dict(self.duplicates),
            "dead_letters": _nested(self.dead_letters),
            "group_committed": self.group_committed,
            "db_attempts": self.db_attempts,
            "write_s": round(self.write_s, 4),
            "event_lag_s": None if self.event_lag_s is None else round(self.event_lag_s, 3),
        }


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (outer, inner), count in sorted(counts.items()):
        nested.setdefault(outer, {})[inner] = count
    return nested


def _leaves(array: pa.Array, columns: Sequence[Column]) -> list[list[Any]]:
    """Python values of each staging column, pulled out of a (nested) struct array."""
    values = []
    for column in columns:
        leaf = array
        for name in column.path:
            leaf = pc.struct_field(leaf, name)
        values.append(leaf.to_pylist())
    return values


@dataclass(frozen=True, slots=True)
class Staged:
    """One topic's valid records of a batch: staging rows and where each came from."""

    rows: list[tuple[Any, ...]]
    partitions: list[int]
    offsets: list[int]


def payload_records(table: pa.Table, topic: str) -> Staged:
    """The staging rows of ``topic``'s valid records in a decoded batch."""
    empty = Staged([], [], [])
    if table.num_rows == 0:
        return empty
    present = table.filter(pc.is_valid(table.column(topic)))
    if present.num_rows == 0:
        return empty
    payloads = present.column(topic).combine_chunks()
    return Staged(
        rows=list(zip(*_leaves(payloads, staging_columns(topic)), strict=True)),
        partitions=present.column("partition").to_pylist(),
        offsets=present.column("offset").to_pylist(),
    )


def dead_letter_records(table: pa.Table) -> list[tuple[Any, ...]]:
    failed = table.filter(pc.is_valid(table.column("kind")))
    if failed.num_rows == 0:
        return []
    columns = [
        failed.column(name).to_pylist()
        for name in ("topic", "partition", "offset", "key", "value", "kind", "reason")
    ]
    return list(zip(*columns, strict=True))


def batch_offsets(table: pa.Table) -> dict[str, dict[str, int]]:
    """Next offset to read per partition, from the records of the batch: what the group
    commits."""
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(["topic", "partition"]).aggregate([("offset", "max")])
    offsets: dict[str, dict[str, int]] = {}
    for topic, partition, highest in zip(
        grouped.column("topic").to_pylist(),
        grouped.column("partition").to_pylist(),
        grouped.column("offset_max").to_pylist(),
        strict=True,
    ):
        offsets.setdefault(topic, {})[str(partition)] = int(highest) + 1
    return offsets


class PostgresSink:
    """One connection, on a private event loop, written to from Spark's foreachBatch thread."""

    def __init__(
        self,
        dsn: str,
        *,
        retry_for_s: float = 300.0,
        stopping: Callable[[], bool] = lambda: False,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._retry_for_s = retry_for_s
        self._stopping = stopping
        self._connect_timeout_s = connect_timeout_s
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._loop.run_until_complete(self._conn.close(timeout=5))
            except (*DATABASE_AWAY, asyncpg.PostgresError):
                self._conn.terminate()  # a server already gone: nothing left to say goodbye to
            self._conn = None
        self._loop.close()

    def write(self, batch_id: int, table: pa.Table, result: BatchResult) -> None:
        """Store one decoded batch in one transaction, retrying while the database is away."""
        started = time.monotonic()
        records = {topic: payload_records(table, topic) for topic in MAPPINGS}
        dead = dead_letter_records(table)
        attempt = 0
        while True:
            result.db_attempts = attempt + 1
            try:
                self._loop.run_until_complete(self._write(records, dead, result))
                break
            except DATABASE_AWAY as exc:
                self._drop_connection()
                waited = time.monotonic() - started
                if waited > self._retry_for_s or self._stopping():
                    raise
                delay = full_jitter_backoff(attempt, cap_s=10.0, base_s=0.5)
                log.warning(
                    "database unavailable, batch retried",
                    batch_id=batch_id,
                    error=f"{type(exc).__name__}: {exc}",
                    attempt=attempt + 1,
                    retry_in_s=round(delay, 2),
                    waited_s=round(waited, 1),
                )
                time.sleep(delay)
                attempt += 1
        result.write_s = time.monotonic() - started

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout_s)
            for topic in MAPPINGS:
                await conn.execute(staging_ddl(topic))
            self._conn = conn
        return self._conn

    async def _write(
        self,
        records: dict[str, Staged],
        dead: list[tuple[Any, ...]],
        result: BatchResult,
    ) -> None:
        conn = await self._connection()
        written: Counter[str] = Counter()
        duplicates: Counter[str] = Counter()
        dead_letters = list(dead)
        async with conn.transaction():
            for topic, staged in records.items():
                if not staged.rows:
                    continue
                table = MAPPINGS[topic].table
                try:
                    async with conn.transaction():  # a savepoint: a refusal undoes this topic only
                        inserted = await self._insert(conn, topic, staged.rows)
                    refused: list[tuple[Any, ...]] = []
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
                    inserted, refused = await self._insert_one_by_one(conn, topic, staged)
                written[table] += inserted
                duplicates[table] += len(staged.rows) - inserted - len(refused)
                dead_letters.extend(refused)
            if dead_letters:
                await conn.executemany(
                    "INSERT INTO dead_letters (topic, partition, kafka_offset, key, value, kind, "
                    "reason) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    dead_letters,
                )
        result.written = written
        result.duplicates = duplicates
        result.dead_letters = Counter((row[0], row[5]) for row in dead_letters)

    async def _insert(
        self, conn: asyncpg.Connection, topic: str, rows: Iterable[tuple[Any, ...]]
    ) -> int:
        staging = staging_table(topic)
        await conn.execute(f"TRUNCATE {staging}")
        await conn.copy_records_to_table(
            staging, records=rows, columns=[c.name for c in staging_columns(topic)]
        )
        status = await conn.execute(MAPPINGS[topic].insert_sql(staging))
        # "INSERT 0 <rows>"
        return int(status.rsplit(" ", 1)[1])

    async def _insert_one_by_one(
        self, conn: asyncpg.Connection, topic: str, staged: Staged
    ) -> tuple[int, list[tuple[Any, ...]]]:
        names = [c.name for c in staging_columns(topic)]
        inserted = 0
        refused: list[tuple[Any, ...]] = []
        for row, partition, offset in zip(
            staged.rows, staged.partitions, staged.offsets, strict=True
        ):
            try:
                async with conn.transaction():
                    inserted += await self._insert(conn, topic, [row])
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                reason = f"{topic}: the database refused the row: {exc}"
                log.warning(
                    "row refused by the database", topic=topic, offset=offset, error=str(exc)
                )
                value = msgspec.json.encode(dict(zip(names, row, strict=True)))
                refused.append((topic, partition, offset, None, value, DEAD_LETTER_KIND_DB, reason))
        return inserted, refused
