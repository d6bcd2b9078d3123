"""Article extraction: bytes of a page to its text, title, date and tags.

Decoding happens here, in the daemon (:func:`decode_html`): the charset the server declared,
else the page's own ``<meta charset>``, else detection (charset-normalizer), and never an
exception: a page that lies about its encoding loses a few characters, not the article.

Extraction is trafilatura's, run in one worker process (:class:`Extractor`) because trafilatura
is neither thread-safe nor leak-free over a long run (its LRU caches and lxml trees grow): the
worker clears trafilatura's caches every ``RESET_CACHES_EVERY`` extractions and is replaced every
``CRYPTOVIZ_SCRAPER_EXTRACT_RECYCLE``. An extraction that runs past
``CRYPTOVIZ_SCRAPER_EXTRACT_TIMEOUT_S`` (pathological HTML) gets its worker killed and replaced;
a worker that dies is replaced too. The event loop never runs trafilatura itself.

The worker is started with ``spawn`` (the daemon has threads; forking them is unsafe), which
re-imports the parent's main module in the child: that module must not do work at import time.
Console scripts and ``python -m`` modules keep theirs under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

# Fewer words than this is a navigation bar, a cookie wall or a teaser: trafilatura's fallback
# extractors return whatever text a page has, article or not.
ARTICLE_MIN_WORDS: Final = 30
RESET_CACHES_EVERY: Final = 100
PARENT_CHECK_S: Final = 1.0
# An extracted body with more elements than this is not a news article (a forum dump, a list
# page); trafilatura drops it instead of spending seconds on it.
MAX_TREE_SIZE: Final = 20_000
_SNIFF_BYTES: Final = 4096
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE
)
# The WHATWG encoding standard: browsers read these labels as windows-1252, and so do pages
# written for browsers (curly quotes and the euro sign in "ISO-8859-1" pages).
_BROWSER_ALIASES: Final = {"iso8859-1": "cp1252", "ascii": "cp1252", "latin-1": "cp1252"}


@dataclass(frozen=True, slots=True)
class Extracted:
    """What trafilatura found; ``date`` in epoch seconds, tags lower-cased later by the caller."""

    title: str
    text: str
    date: float | None
    tags: tuple[str, ...]
    description: str


class ExtractionError(Exception):
    """Extraction did not complete; ``kind`` (timeout, crashed, error) is a metric label."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


# -- decoding -------------------------------------------------------------------------------------


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return _BROWSER_ALIASES.get(name, name)


def decode_html(body: bytes, declared: str | None = None) -> tuple[str, str]:
    """The page as text, and the encoding used. Order: a byte-order mark, the declared charset,
    ``<meta charset>``, detection, then UTF-8 with replacement characters."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), encoding
    match = _META_CHARSET.search(body[:_SNIFF_BYTES])
    candidates = [_codec(declared), _codec(match.group(1).decode("ascii")) if match else None]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            return body.decode(candidate), candidate
        except UnicodeDecodeError:
            if candidate == "cp1252":  # a byte cp1252 leaves undefined: latin-1 maps them all
                return body.decode("latin-1"), "latin-1"
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # noqa: PLC0415 - rare path, heavy-ish import

    best = from_bytes(body[:200_000]).best()
    if best is not None:
        return body.decode(best.encoding, errors="replace"), best.encoding
    return body.decode("utf-8", errors="replace"), "utf-8"


# -- the worker side ------------------------------------------------------------------------------

_done_in_worker = 0
_config: Any = None


def _trafilatura_config() -> Any:
    """trafilatura's settings for this worker (built once; the tree limit is only set here)."""
    global _config  # noqa: PLW0603 - one per worker process
    if _config is None:
        from trafilatura.settings import use_config  # noqa: PLC0415

        _config = use_config()
        _config.set("DEFAULT", "MAX_TREE_SIZE", str(MAX_TREE_SIZE))
    return _config


def _init_worker() -> None:
    # Ctrl-C, supervisord's stopasgroup and systemd's control-group kill reach the worker as
    # well as the daemon. The daemon stops the worker itself once its graceful stop is done; a
    # worker dying first would turn the extractions in flight into failures.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pool's queues never report a dead parent to the worker (it holds both pipe ends): a
    # daemon killed outright (OOM, SIGKILL) would leave it running forever. It watches instead.
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    # trafilatura logs to stderr; its failures reach the daemon as results instead.
    logging.disable(logging.CRITICAL)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _warm_up() -> int:
    import trafilatura  # noqa: F401, PLC0415 - loaded once per worker, not per page

    return os.getpid()


def _split_tags(values: object) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        return []
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def _parse_date(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            moment = datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return None
    stamp = moment.timestamp()
    return stamp if stamp > 0 else None


def extract_document(html: str, url: str) -> Extracted | None:
    """trafilatura on one page; None when the page holds no article. Runs in the worker."""
    global _done_in_worker  # noqa: PLW0603 - one counter per worker process
    import trafilatura  # noqa: PLC0415
    import trafilatura.meta  # noqa: PLC0415

    try:
        document: Any = trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=False,
            include_images=False,
            include_links=False,
            deduplicate=False,
            config=_trafilatura_config(),
            date_extraction_params={
                "original_date": True,
                # The extensive search guesses dates from free text and URLs; a wrong date is
                # worse than none, and feeds carry dates anyway.
                "extensive_search": False,
                "outputformat": "%Y-%m-%dT%H:%M:%S%z",
                # A day ahead: htmldate reads the bound as midnight and cuts any later date of
                # the same day down to that midnight (an article of today lost its time). The
                # daemon clamps dates that are really in the future itself.
                "max_date": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
            },
        )
    finally:
        _done_in_worker += 1
        if _done_in_worker % RESET_CACHES_EVERY == 0:
            trafilatura.meta.reset_caches()
    if document is None:
        return None
    text = str(document.text or "").strip()
    if len(text.split()) < ARTICLE_MIN_WORDS:
        return None
    return Extracted(
        title=str(document.title or "").strip(),
        text=text,
        date=_parse_date(document.date),
        tags=tuple(_split_tags(document.tags) + _split_tags(document.categories)),
        description=str(document.description or "").strip(),
    )


# -- the daemon side ------------------------------------------------------------------------------


class Extractor:
    """The single extraction worker process, replaced when recycled, stuck or dead."""

    def __init__(
        self,
        *,
        timeout_s: float,
        recycle_after: int,
        on_restart: Callable[[str], None] | None = None,
        target: Callable[[str, str], Extracted | None] = extract_document,
    ) -> None:
        """``target`` runs in the worker: a module-level function (it travels by name)."""
        self.timeout_s = timeout_s
        self.target = target
        self.recycle_after = recycle_after
        self._on_restart = on_restart
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._pid: int | None = None
        self._done = 0
        self._lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Spawn the worker now, so the first page does not pay for it (a second or so)."""
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._closed:
            raise ExtractionError("error", "extractor is closed")
        if self._executor is None:
            # Our own recycling rather than max_tasks_per_child: on Python 3.11-3.13 that
            # option deadlocks the pool once a worker retires with tasks queued (CPython
            # gh-115634). spawn, not fork: the daemon has threads and an event loop.
            executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
            try:
                self._pid = await asyncio.wrap_future(executor.submit(_warm_up))
            except BaseException:
                executor.shutdown(wait=False, cancel_futures=True)
                raise
            self._executor = executor
            self._done = 0
        return self._executor

    async def extract(self, html: str, url: str) -> Extracted | None:
        """Extract one page; None when it has no article. Raises :class:`ExtractionError`."""
        async with self._lock:
            try:
                executor = await self._ensure()
            except BrokenProcessPool as exc:
                await self._discard("crashed")
                raise ExtractionError("crashed", f"worker failed to start: {exc}") from None
            future = asyncio.wrap_future(executor.submit(self.target, html, url))
            try:
                result = await asyncio.wait_for(future, self.timeout_s)
            except TimeoutError:
                await self._discard("timeout")
                raise ExtractionError("timeout", f"over {self.timeout_s}s") from None
            except BrokenProcessPool:
                await self._discard("crashed")
                raise ExtractionError("crashed", "the worker process died") from None
            except Exception as exc:  # noqa: BLE001 - whatever trafilatura raised in the worker
                raise ExtractionError("error", f"{type(exc).__name__}: {exc}"[:200]) from None
            self._done += 1
            if self._done >= self.recycle_after:
                await self._discard("recycled")
            return result

    async def _discard(self, reason: str) -> None:
        """Retire the worker; a stuck or dead one is killed (it cannot be asked to stop)."""
        executor, self._executor = self._executor, None
        pid, self._pid = self._pid, None
        if executor is None:
            return
        if self._on_restart is not None and reason != "closed":
            self._on_restart(reason)
        if reason != "recycled" and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # shutdown(wait=True) joins the process: seconds at worst, so off the event loop.
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        log.debug("extraction worker replaced", reason=reason)

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            await self._discard("closed")
