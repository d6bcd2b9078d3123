"""Which articles were already published, by canonical URL and by content, across restarts.

Two keys catch two kinds of repeat:

- the canonical URL (:func:`canonical_url`) catches the same article listed twice, in one feed or
  across polls, whatever tracking parameters or fragments each listing adds;
- the content fingerprint (:func:`content_fingerprint`) catches one text published under several
  URLs: syndication partners, a site's AMP or mirror copies.

An article is remembered only once Kafka acknowledged it (the caller's job: ``add`` after the
ack), so a crash between the two publishes it again at most once; it is never lost. Stores:

- :class:`FileSeenStore`: JSON lines appended to ``CRYPTOVIZ_DATA_DIR/scraper-seen.jsonl``,
  loaded at start. No database needed; one daemon per data directory.
- :class:`PostgresSeenStore`: the ``scraper_seen`` table, shared by every scraper that points at
  the database. The scraper creates it itself (``CREATE TABLE IF NOT EXISTS``) until the schema
  migrations take it over.

Both forget entries older than ``CRYPTOVIZ_SCRAPER_DEDUP_RETENTION_DAYS``: feeds list days or
weeks of articles, never months, so an older key can no longer match anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

log = structlog.get_logger(__name__)

# Tracking parameters: they name the campaign or referrer that led to the page, not the page.
_TRACKING_PARAMS: Final = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ref",
        "ref_src",
        "_hsenc",
        "_hsmi",
    }
)
_TRACKING_PREFIXES: Final = ("utm_",)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def canonical_url(url: str, *, keep_trailing_slash: bool = False) -> str:
    """The key of a page: scheme and host lower-cased, default port, credentials, fragment,
    tracking parameters and trailing slash removed. Other parameters keep their order (they may
    name the article), and the path keeps its case (servers may treat it as significant).

    ``keep_trailing_slash`` gives the link to publish rather than the key: the same cleaning,
    but the path as the site wrote it, so it never costs a redirect.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a non-numeric port: keep what was written, it is still a key
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name.lower() not in _TRACKING_PARAMS and not name.lower().startswith(_TRACKING_PREFIXES)
    ]
    path = parts.path if keep_trailing_slash else parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))


_WORD: Final = re.compile(r"\w+")
# Fewer words than this is a teaser or an error page: too little to tell two articles apart.
FINGERPRINT_MIN_WORDS: Final = 25
# The opening words identify an article; copies differ mostly at the end (a "first published
# on" line, related links, a different sign-off), so the tail is left out of the hash.
FINGERPRINT_WORDS: Final = 80


def normalise_text(text: str) -> list[str]:
    """Words of ``text``, compatibility-normalised and case-folded: what survives re-typesetting
    (curly quotes, non-breaking spaces, full-width characters, line breaks, punctuation)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_fingerprint(text: str, title: str = "") -> str | None:
    """A hash of the article's opening words; None when the text is too short to be one.

    The title is skipped when the text starts with it (extractors keep the headline): partners
    often retitle a syndicated story while keeping its body.
    """
    words = normalise_text(text)
    title_words = normalise_text(title)
    if title_words and words[: len(title_words)] == title_words:
        words = words[len(title_words) :]
    if len(words) < FINGERPRINT_MIN_WORDS:
        return None
    opening = " ".join(words[:FINGERPRINT_WORDS]).encode()
    return hashlib.blake2b(opening, digest_size=16).hexdigest()


class SeenStore(ABC):
    """Durable memory of published articles. Methods may raise on I/O: the caller counts it."""

    kind: str = "seen"

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self.ready = False

    @abstractmethod
    async def open(self) -> None:
        """Load or connect; safe to call again after a failure."""

    @abstractmethod
    async def close(self) -> None:
        """Release files and connections; safe to call twice."""

    @abstractmethod
    async def has_url(self, url_key: str) -> bool: ...

    @abstractmethod
    async def has_content(self, fingerprint: str) -> bool: ...

    @abstractmethod
    async def add(self, url_key: str, fingerprint: str | None, source: str) -> None:
        """Remember an article (after its publish was acknowledged)."""

    @abstractmethod
    async def prune(self) -> int:
        """Forget entries past the retention; return how many."""


class FileSeenStore(SeenStore):
    """Append-only JSON lines, one per article: ``{"u": url_key, "f": fingerprint, "s": source,
    "t": seen_at}``. Loaded whole at start (90 days of the default sources is a few MB)."""

    kind = "file"

    def __init__(self, path: Path, retention_s: float) -> None:
        super().__init__(retention_s)
        self.path = path
        # url_key -> (fingerprint, seen_at); the fingerprint index is derived from it.
        self._rows: dict[str, tuple[str | None, float]] = {}
        self._fingerprints: set[str] = set()
        self._file: IO[str] | None = None

    async def open(self) -> None:
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dropped, corrupt = self._load()
        if dropped or corrupt:
            self._rewrite()
        if corrupt:
            # A crash mid-append leaves half a line; the article it named may be published once
            # more, which consumers absorb (they upsert on the article id).
            log.warning(
                "corrupt lines in the seen file skipped", path=str(self.path), lines=corrupt
            )
        # Appends go straight to the OS (flushed per line): a crash of the daemon loses nothing
        # acknowledged; a power cut may lose the last lines, which means duplicates, not losses.
        self._file = self.path.open("a", encoding="utf-8")
        self.ready = True
        log.info(
            "seen articles loaded", store="file", path=str(self.path), articles=len(self._rows)
        )

    def _load(self) -> tuple[int, int]:
        cutoff = time.time() - self.retention_s
        dropped = corrupt = 0
        try:
            handle = self.path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return 0, 0
        with handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    url_key, fingerprint, seen_at = str(row["u"]), row.get("f"), float(row["t"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    corrupt += 1
                    continue
                if seen_at < cutoff:
                    dropped += 1
                    continue
                self._rows[url_key] = (str(fingerprint) if fingerprint else None, seen_at)
        self._fingerprints = {fp for fp, _ in self._rows.values() if fp}
        return dropped, corrupt

    def _rewrite(self) -> None:
        """Write the kept entries to a new file and swap it in atomically."""
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            for url_key, (fingerprint, seen_at) in self._rows.items():
                row = {"u": url_key, "f": fingerprint, "t": seen_at}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    async def close(self) -> None:
        handle, self._file = self._file, None
        self.ready = False
        if handle is not None:
            handle.close()

    async def has_url(self, url_key: str) -> bool:
        return url_key in self._rows

    async def has_content(self, fingerprint: str) -> bool:
        return fingerprint in self._fingerprints

    async def add(self, url_key: str, fingerprint: str | None, source: str) -> None:
        if self._file is None:
            raise RuntimeError("seen store is not open")
        now = round(time.time(), 3)
        self._rows[url_key] = (fingerprint, now)
        if fingerprint:
            self._fingerprints.add(fingerprint)
        row: dict[str, Any] = {"u": url_key, "f": fingerprint, "s": source, "t": now}
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    async def prune(self) -> int:
        cutoff = time.time() - self.retention_s
        before = len(self._rows)
        self._rows = {k: row for k, row in self._rows.items() if row[1] >= cutoff}
        self._fingerprints = {fp for fp, _ in self._rows.values() if fp}
        dropped = before - len(self._rows)
        if dropped and self._file is not None:
            self._file.close()
            self._rewrite()
            self._file = self.path.open("a", encoding="utf-8")
        return dropped


# Owned by the scraper for now; when the schema migrations (deploy/) take the table over, this
# statement must stay compatible with theirs or be removed.
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS scraper_seen (
    url_key     text PRIMARY KEY,
    fingerprint text,
    source      text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scraper_seen_fingerprint_idx
    ON scraper_seen (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX IF NOT EXISTS scraper_seen_seen_at_idx ON scraper_seen (seen_at);
"""
# Two scrapers starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic
# against a concurrent create); a transaction-scoped advisory lock serialises them.
_SCHEMA_LOCK: Final = 0x5C7A9E5E
# Keys known to be seen, kept in memory so each poll does not query every entry of every feed.
_POSITIVE_CACHE: Final = 50_000


class PostgresSeenStore(SeenStore):
    """The ``scraper_seen`` table, via an asyncpg pool."""

    kind = "postgres"

    def __init__(self, dsn: str, redacted_dsn: str, retention_s: float) -> None:
        super().__init__(retention_s)
        self._dsn = dsn
        self._redacted = redacted_dsn
        self._pool: Any = None
        self._known: OrderedDict[str, None] = OrderedDict()

    async def open(self) -> None:
        if self._pool is not None:
            return
        import asyncpg  # noqa: PLC0415 - only the postgres mode needs it

        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=4, command_timeout=15, timeout=10
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            # The DSN may hold a password: name the server by its redacted form only.
            raise ConnectionError(
                f"cannot reach PostgreSQL at {self._redacted}: {type(exc).__name__}"
            ) from None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self.ready = True
        dropped = await self.prune()
        log.info("seen articles table ready", store="postgres", pruned=dropped)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self.ready = False
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()

    def _remember(self, key: str) -> None:
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > _POSITIVE_CACHE:
            self._known.popitem(last=False)

    async def has_url(self, url_key: str) -> bool:
        if url_key in self._known:
            return True
        found = await self._fetch("SELECT 1 FROM scraper_seen WHERE url_key = $1", url_key)
        if found:
            self._remember(url_key)
        return found

    async def has_content(self, fingerprint: str) -> bool:
        if f"#{fingerprint}" in self._known:
            return True
        found = await self._fetch(
            "SELECT 1 FROM scraper_seen WHERE fingerprint = $1 LIMIT 1", fingerprint
        )
        if found:
            self._remember(f"#{fingerprint}")
        return found

    async def _fetch(self, query: str, value: str) -> bool:
        if self._pool is None:
            raise RuntimeError("seen store is not open")
        return await self._pool.fetchval(query, value) is not None

    async def add(self, url_key: str, fingerprint: str | None, source: str) -> None:
        if self._pool is None:
            raise RuntimeError("seen store is not open")
        await self._pool.execute(
            "INSERT INTO scraper_seen (url_key, fingerprint, source) VALUES ($1, $2, $3) "
            "ON CONFLICT (url_key) DO NOTHING",
            url_key,
            fingerprint,
            source,
        )
        self._remember(url_key)
        if fingerprint:
            self._remember(f"#{fingerprint}")

    async def prune(self) -> int:
        if self._pool is None:
            return 0
        status = await self._pool.execute(
            "DELETE FROM scraper_seen WHERE seen_at < now() - make_interval(secs => $1)",
            self.retention_s,
        )
        # The positive cache may now hold pruned keys: harmless, they are past matching anyway.
        return int(str(status).rsplit(" ", 1)[-1] or 0)
