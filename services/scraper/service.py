"""``cryptoviz-scraper``: crypto news feeds into ``rawarticle``, with sentiment and mentions.

Each enabled source polls on its own schedule, in its own task: a slow, broken or hostile site
delays only itself. One poll:

1. fetch the feed (conditional GET: an unchanged feed is a 304 and ends the poll);
2. parse it (RSS, Atom, JSON Feed) and drop entries whose canonical URL was already published;
3. per new entry, with at most ``CRYPTOVIZ_SCRAPER_ARTICLE_CONCURRENCY`` at once across sources:
   fetch the page, decode it, extract the article (trafilatura, in the worker process), fill
   gaps from the feed, drop it if its content was already published under another URL;
4. score the poll's articles for sentiment in batches, off the event loop;
5. publish each (keyed by source), wait for Kafka's acknowledgement, and only then remember it
   as seen: a crash in between publishes an article twice, never loses one.

An entry that could not be finished this time (page 5xx or timeout, sentiment or Kafka failure,
daemon stopping) is left for the next poll, and the feed's validators are forgotten so that poll
sees the entries again instead of a 304. A page that keeps failing is published with the feed's
own text after ``CRYPTOVIZ_SCRAPER_PAGE_ATTEMPTS`` polls.

Dates: the feed's date, else the page's; none is ``null``. A date more than
``CRYPTOVIZ_SCRAPER_FUTURE_TOLERANCE_S`` ahead is a site's time-zone bug and is clamped to the
scrape time (counted in ``cryptoviz_scraper_future_dates_clamped_total``): the article exists
now, and a future time would sort it above everything for hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.scraper.dedup import (
    FileSeenStore,
    PostgresSeenStore,
    SeenStore,
    canonical_url,
    content_fingerprint,
)
from services.scraper.extract import Extracted, ExtractionError, Extractor, decode_html
from services.scraper.feeds import FeedEntry, FeedError, clean_tags, parse_feed
from services.scraper.fetch import Fetcher, FetchResult, Validators
from services.scraper.mentions import MentionFinder
from services.scraper.sentiment import SentimentBackend, SentimentResult, article_text, load_backend
from services.scraper.settings import ScraperSettings
from services.scraper.sources import Source, SourceList, load_sources
from shared.bus import DeliveryError, Producer
from shared.envelope import ArticleContent, EnvelopeError, RawArticle, Sentiment
from shared.runtime import Service

log = structlog.get_logger(__name__)

SUMMARY_CHARS: Final = 300
MAX_SUMMARY_CHARS: Final = 1_000
SENTIMENT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# In-memory bookkeeping of entries that are not published (yet); bounded like any cache.
_MEMORY_KEYS: Final = 20_000
HOUSEKEEPING_INTERVAL_S: Final = 300.0
PRUNE_INTERVAL_S: Final = 86_400.0
# Spread of each source's poll interval, so sources started together drift apart.
POLL_JITTER: Final = 0.1


class ScraperMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fetches = Counter(
            "cryptoviz_scraper_fetches",
            "HTTP fetches by source, kind (feed, article) and status class (200, 304, 4xx, 5xx, "
            "timeout, error, too_large, robots).",
            ["source", "kind", "status"],
            registry=registry,
        )
        self.published = Counter(
            "cryptoviz_scraper_articles_published",
            "Articles acknowledged by Kafka on rawarticle.",
            ["source"],
            registry=registry,
        )
        self.extraction_failures = Counter(
            "cryptoviz_scraper_extraction_failures",
            "Pages from which no article could be extracted (no_content, not_html, timeout, "
            "crashed, error); the feed's text is used instead when it has one.",
            ["source", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "cryptoviz_scraper_duplicates_skipped",
            "Entries skipped as already published, by canonical URL or by content fingerprint.",
            ["kind"],
            registry=registry,
        )
        self.feed_errors = Counter(
            "cryptoviz_scraper_feed_errors",
            "Feeds that could not be used (malformed, not_a_feed) or were malformed but "
            "recovered (recovered), and unusable entries (bad_entry).",
            ["source", "kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "cryptoviz_scraper_articles_dropped",
            "Entries given up for good: no text at all (no_text), refused by the envelope "
            "(invalid), refused by Kafka for good (rejected).",
            ["source", "reason"],
            registry=registry,
        )
        self.deferred = Counter(
            "cryptoviz_scraper_articles_deferred",
            "Entries left for the next poll (page_unavailable, sentiment_failed, "
            "delivery_failed, dedup_unavailable, stopping, error).",
            ["source", "reason"],
            registry=registry,
        )
        self.future_dates = Counter(
            "cryptoviz_scraper_future_dates_clamped",
            "Published dates too far in the future, clamped to the scrape time.",
            ["source"],
            registry=registry,
        )
        self.sentiment_latency = Histogram(
            "cryptoviz_scraper_sentiment_latency_seconds",
            "Time to score one batch of articles.",
            buckets=SENTIMENT_BUCKETS,
            registry=registry,
        )
        self.sentiment_backend = Gauge(
            "cryptoviz_scraper_sentiment_backend",
            "1 for the sentiment backend in use (transformers or lexicon).",
            ["backend"],
            registry=registry,
        )
        self.sentiment_fallback = Gauge(
            "cryptoviz_scraper_sentiment_fallback",
            "1 when the configured model could not be loaded and the lexicon runs instead.",
            registry=registry,
        )
        self.last_success = Gauge(
            "cryptoviz_scraper_last_success_timestamp_seconds",
            "When the source's feed was last fetched and parsed (or found unchanged), Unix "
            "seconds.",
            ["source"],
            registry=registry,
        )
        self.worker_restarts = Counter(
            "cryptoviz_scraper_extraction_worker_restarts",
            "Replacements of the extraction worker process (recycled, timeout, crashed).",
            ["reason"],
            registry=registry,
        )
        self.sources = Gauge(
            "cryptoviz_scraper_sources",
            "Sources in the sources file, by state (enabled, disabled).",
            ["state"],
            registry=registry,
        )


@dataclass(slots=True)
class _Candidate:
    source: Source
    entry: FeedEntry
    key: str


@dataclass(slots=True)
class _Article:
    """An article ready for sentiment and publishing."""

    source: Source
    key: str
    url: str
    fingerprint: str | None
    title: str
    summary: str
    text: str
    published_at: float | None
    tags: list[str]
    mentions: list[str]


@dataclass(slots=True)
class PollReport:
    """What one poll of one source did: a log line, and the ``--once`` summary."""

    source: str
    feed: str = "not_fetched"
    entries: int = 0
    published: int = 0
    duplicates: int = 0
    deferred: int = 0
    failures: Tally[str] = field(default_factory=Tally)

    def as_log(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "entries": self.entries,
            "published": self.published,
            "duplicates": self.duplicates,
            "deferred": self.deferred,
            "failures": dict(self.failures),
        }


class _BoundedKeys:
    """An insertion-ordered set with a size cap (oldest forgotten first)."""

    def __init__(self, limit: int = _MEMORY_KEYS) -> None:
        self._items: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def get(self, key: str) -> int:
        return self._items.get(key, 0)

    def set(self, key: str, value: int) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._items


def _looks_like_html(content_type: str) -> bool:
    # Servers that send no type, or a generic one, often serve HTML all the same.
    mime = content_type.lower()
    return not mime or "html" in mime or "xml" in mime or mime in _GENERIC_TYPES


_GENERIC_TYPES: Final = frozenset({"application/octet-stream", "text/plain"})


def _event_id(key: str) -> str:
    # Stable per article: a consumer can drop a republished duplicate by event id too.
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _lead(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first ``limit`` characters of ``text``, cut at a word, with an ellipsis if cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit)
    return flat[: cut if cut > limit // 2 else limit].rstrip(" ,;:-") + "\u2026"


class ScraperService(Service):
    name = "scraper"

    def __init__(
        self, settings: ScraperSettings, registry: CollectorRegistry, *, once: bool = False
    ) -> None:
        self.settings = settings
        self.once = once
        # A bad sources file is a configuration error: raised here, before anything starts.
        self.sources: SourceList = load_sources(settings.scraper_sources)
        self.metrics = ScraperMetrics(registry)
        self.metrics.sources.labels("enabled").set(len(self.sources.enabled))
        self.metrics.sources.labels("disabled").set(
            len(self.sources.sources) - len(self.sources.enabled)
        )
        for source in self.sources.enabled:
            self.metrics.published.labels(source.name)
        self.producer = Producer(
            settings, name="cryptoviz-scraper", registry=registry, topics=(RawArticle.topic,)
        )
        self.fetcher = Fetcher(settings)
        self.extractor = Extractor(
            timeout_s=settings.scraper_extract_timeout_s,
            recycle_after=settings.scraper_extract_recycle,
            on_restart=lambda reason: self.metrics.worker_restarts.labels(reason).inc(),
        )
        retention_s = settings.scraper_dedup_retention_days * 86_400
        self.store: SeenStore = (
            PostgresSeenStore(
                settings.db_dsn.get_secret_value(), settings.db_dsn_redacted, retention_s
            )
            if settings.scraper_dedup == "postgres"
            else FileSeenStore(settings.seen_file, retention_s)
        )
        self.mentions = MentionFinder()
        self.backend: SentimentBackend | None = None
        self._article_slots = asyncio.Semaphore(settings.scraper_article_concurrency)
        self._sentiment_lock = asyncio.Lock()
        # feedparser is pure Python and not documented as thread-safe: one parsing thread.
        self._parser_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedparse")
        # Keys being worked on by some poll right now: the same article in two feeds at once.
        self._claimed_urls: set[str] = set()
        self._claimed_content: set[str] = set()
        self._page_failures = _BoundedKeys()
        self._abandoned = _BoundedKeys()  # no text anywhere: not published, not asked again
        self._producing = False
        self._stopping = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        # Each step is idempotent: the runtime calls start again after a failure (Kafka or
        # PostgreSQL not reachable yet) and what already worked is kept.
        if self.backend is None:
            self.backend = await asyncio.to_thread(
                load_backend,
                self.settings.sentiment_model,
                label_map=self.settings.sentiment_label_map or None,
                batch_size=self.settings.sentiment_batch_size,
            )
            self._announce_backend(self.backend)
        await self.store.open()
        if not self.fetcher.running:
            self._load_validators()
            await self.fetcher.start()
        await self.extractor.start()
        await self.producer.start()
        self._producing = True
        log.info(
            "scraper ready",
            sources=[source.name for source in self.sources.enabled],
            sources_file=self.sources.origin,
            dedup=self.store.kind,
            sentiment=self.backend.name,
            once=self.once,
        )

    def _announce_backend(self, backend: SentimentBackend) -> None:
        self.metrics.sentiment_backend.labels(backend.name).set(1)
        # load_backend has already logged the fallback and its reason; the metric says it too.
        reason: str | None = getattr(backend, "fallback_reason", None)
        self.metrics.sentiment_fallback.set(1 if reason else 0)

    async def run(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        if self.once:
            await self._run_once()
            return
        tasks = [
            asyncio.create_task(self._poll_forever(source), name=f"poll {source.name}")
            for source in self.sources.enabled
        ]
        tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        await stopping.wait()
        # Polls stop taking new articles at once; give the ones in flight a moment to publish
        # and be remembered, then cancel (an unremembered article is published again later).
        grace = min(5.0, self.settings.stop_timeout_s / 4)
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.info("polls cancelled at stop", count=len(pending))

    async def _run_once(self) -> None:
        started = time.monotonic()
        reports = await asyncio.gather(
            *(self._poll_safely(source) for source in self.sources.enabled)
        )
        totals: Tally[str] = Tally()
        for report in reports:
            totals.update(
                published=report.published,
                duplicates=report.duplicates,
                deferred=report.deferred,
                failed=sum(report.failures.values()),
            )
        log.info(
            "scrape pass finished",
            duration_s=round(time.monotonic() - started, 3),
            **dict(totals),
            sources={report.source: report.as_log() for report in reports},
        )

    async def stop(self) -> None:
        self._producing = False
        unsent = await self.producer.stop(timeout_s=self.settings.stop_timeout_s * 0.5)
        self._save_validators()
        await self.fetcher.close()
        await self.extractor.close()
        await self.store.close()
        self._parser_thread.shutdown(wait=False, cancel_futures=True)
        log.info("scraper stopped", undelivered=unsent)

    def readiness(self) -> dict[str, bool]:
        return {
            "kafka": self._producing,
            "sources": bool(self.sources.enabled),
            "dedup": self.store.ready,
        }

    # -- scheduling -----------------------------------------------------------------------------

    async def _poll_safely(self, source: Source) -> PollReport:
        try:
            return await self.poll(source)
        except Exception:
            # A bug met by one source must not end its polling, nor anyone else's.
            log.exception("poll failed", source=source.name)
            return PollReport(source.name, feed="failed")

    async def _poll_forever(self, source: Source) -> None:
        while not self._stopping.is_set():
            report = await self._poll_safely(source)
            log.info("source polled", source=source.name, **report.as_log())
            interval = source.poll_interval_s * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)  # noqa: S311
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def _housekeeping(self) -> None:
        pruned_at = time.monotonic()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HOUSEKEEPING_INTERVAL_S)
            self._save_validators()
            if time.monotonic() - pruned_at >= PRUNE_INTERVAL_S:
                pruned_at = time.monotonic()
                try:
                    pruned = await self.store.prune()
                except Exception as exc:  # noqa: BLE001 - retried tomorrow
                    log.warning("pruning seen articles failed", error=str(exc))
                else:
                    log.info("seen articles pruned", count=pruned)

    # -- one poll -------------------------------------------------------------------------------

    def _count_fetch(self, source: Source, kind: str, result: FetchResult) -> None:
        self.metrics.fetches.labels(source.name, kind, result.status).inc()

    async def poll(self, source: Source) -> PollReport:
        """Fetch one source's feed and publish its new articles."""
        report = PollReport(source.name)
        result = await self.fetcher.fetch(source.url, feed=True)
        self._count_fetch(source, "feed", result)
        report.feed = result.status
        if result.status == "304":
            self.metrics.last_success.labels(source.name).set(time.time())
            return report
        if not result.ok:
            log.warning(
                "feed fetch failed",
                source=source.name,
                url=source.url,
                status=result.status,
                http_status=result.http_status,
                error=result.error,
            )
            return report
        loop = asyncio.get_running_loop()
        try:
            feed = await loop.run_in_executor(
                self._parser_thread,
                lambda: parse_feed(
                    result.body, url=result.final_url, content_type=result.content_type
                ),
            )
        except FeedError as exc:
            self.metrics.feed_errors.labels(source.name, exc.kind).inc()
            report.feed = exc.kind
            log.warning("feed unusable", source=source.name, kind=exc.kind, reason=exc.reason)
            # Refetch in full next time: a fixed feed may keep its ETag.
            self.fetcher.validators.pop(source.url, None)
            return report
        if feed.warning:
            self.metrics.feed_errors.labels(source.name, "recovered").inc()
            log.info("malformed feed recovered", source=source.name, warning=feed.warning)
        if feed.skipped:
            self.metrics.feed_errors.labels(source.name, "bad_entry").inc(feed.skipped)
        self.metrics.last_success.labels(source.name).set(time.time())
        entries = feed.entries[: self.settings.scraper_max_entries_per_feed]
        report.entries = len(entries)
        candidates: list[_Candidate] = []
        ready: list[_Article] = []
        try:
            await self._new_candidates(source, entries, report, candidates)
            articles = await asyncio.gather(
                *(self._prepare_safely(candidate, report) for candidate in candidates)
            )
            ready = [article for article in articles if article is not None]
            await self._score_and_publish(ready, report)
        except BaseException:
            # Whatever was left undone must be seen again by the next poll, not hidden by a 304.
            self.fetcher.validators.pop(source.url, None)
            raise
        finally:
            for candidate in candidates:
                self._claimed_urls.discard(candidate.key)
            for article in ready:
                self._release(article)
        if report.deferred:
            # Entries were left for later: the next poll must see them, not a 304.
            self.fetcher.validators.pop(source.url, None)
        return report

    async def _new_candidates(
        self,
        source: Source,
        entries: Sequence[FeedEntry],
        report: PollReport,
        candidates: list[_Candidate],
    ) -> None:
        """Append the entries not published yet to ``candidates``, claiming their URLs (the
        caller releases the claims, whatever happens)."""
        for entry in entries:
            key = canonical_url(entry.url)
            if key in self._abandoned:
                continue  # dropped before, counted then
            if key in self._claimed_urls:
                # The same URL earlier in this feed, or in another source's poll right now.
                self._skip_duplicate("url", report)
                continue
            # Claimed before the store is asked: another poll may ask about it meanwhile.
            candidate = _Candidate(source, entry, key)
            self._claimed_urls.add(key)
            candidates.append(candidate)
            try:
                seen = await self.store.has_url(key)
            except Exception as exc:  # noqa: BLE001 - the store's failure is the entry's deferral
                seen = None
                self._defer(source, "dedup_unavailable", report, error=str(exc))
            if seen is not False:
                candidates.remove(candidate)
                self._claimed_urls.discard(key)
            if seen:
                self._skip_duplicate("url", report)

    def _skip_duplicate(self, kind: str, report: PollReport) -> None:
        self.metrics.duplicates.labels(kind).inc()
        report.duplicates += 1

    def _defer(self, source: Source, reason: str, report: PollReport, **details: object) -> None:
        self.metrics.deferred.labels(source.name, reason).inc()
        report.deferred += 1
        if reason != "stopping":
            log.info("article deferred", source=source.name, reason=reason, **details)

    def _drop(self, source: Source, reason: str, report: PollReport, **details: object) -> None:
        self.metrics.dropped.labels(source.name, reason).inc()
        report.failures[reason] += 1
        log.warning("article dropped", source=source.name, reason=reason, **details)

    async def _prepare_safely(self, candidate: _Candidate, report: PollReport) -> _Article | None:
        try:
            return await self._prepare(candidate, report)
        except Exception:
            # A bug met by one article (a page that breaks a parser...) defers that article
            # only; the rest of the poll goes on.
            log.exception("article failed", source=candidate.source.name, url=candidate.entry.url)
            self._defer(candidate.source, "error", report)
            return None

    async def _prepare(self, candidate: _Candidate, report: PollReport) -> _Article | None:
        """Fetch, extract and assemble one article; None when it is skipped or deferred."""
        source, entry, key = candidate.source, candidate.entry, candidate.key
        async with self._article_slots:
            if self._stopping.is_set():
                self._defer(source, "stopping", report)
                return None
            page = await self.fetcher.fetch(entry.url)
            self._count_fetch(source, "article", page)
            extracted: Extracted | None = None
            if page.ok:
                extracted = await self._extract(source, page, report)
            elif page.transient:
                failures = self._page_failures.get(key) + 1
                if failures < self.settings.scraper_page_attempts:
                    self._page_failures.set(key, failures)
                    self._defer(
                        source, "page_unavailable", report, url=entry.url, status=page.status
                    )
                    return None
                report.failures[f"page_{page.status}"] += 1
                log.info("page still unavailable, using the feed's text", url=entry.url)
            else:
                report.failures[f"page_{page.status}"] += 1
                log.info(
                    "page not fetched, using the feed's text",
                    source=source.name,
                    url=entry.url,
                    status=page.status,
                    error=page.error,
                )
        self._page_failures.pop(key)
        return await self._assemble(candidate, extracted, report)

    async def _extract(
        self, source: Source, page: FetchResult, report: PollReport
    ) -> Extracted | None:
        if not _looks_like_html(page.content_type):
            # A PDF, an image, a video: nothing trafilatura can read; the feed's text stands in.
            reason = "not_html"
            log.info("page is not HTML", source=source.name, url=page.url, type=page.content_type)
            self.metrics.extraction_failures.labels(source.name, reason).inc()
            report.failures[f"extraction_{reason}"] += 1
            return None
        html, _ = decode_html(page.body, page.charset)
        try:
            extracted = await self.extractor.extract(html, page.final_url)
        except ExtractionError as exc:
            reason = exc.kind
            log.warning("extraction failed", source=source.name, url=page.url, reason=exc.reason)
        else:
            if extracted is not None:
                return extracted
            reason = "no_content"
            log.info("no article in the page", source=source.name, url=page.url)
        self.metrics.extraction_failures.labels(source.name, reason).inc()
        report.failures[f"extraction_{reason}"] += 1
        return None

    async def _assemble(
        self, candidate: _Candidate, extracted: Extracted | None, report: PollReport
    ) -> _Article | None:
        source, entry, key = candidate.source, candidate.entry, candidate.key
        text = extracted.text if extracted else (entry.content or entry.summary)
        text = text.strip()[: self.settings.scraper_max_text_chars]
        if not text:
            self._drop(source, "no_text", report, url=entry.url)
            self._abandoned.set(key, 1)
            return None
        title = entry.title or (extracted.title if extracted else "")
        fingerprint = content_fingerprint(text, title)
        if fingerprint is not None:
            if fingerprint in self._claimed_content:
                # Another article holds the same text right now; if that one is not published
                # after all, this one meets no copy in the store at its next poll.
                self._skip_duplicate("content", report)
                return None
            self._claimed_content.add(fingerprint)
            try:
                copy = await self.store.has_content(fingerprint)
                if copy:
                    # Remembered under this URL too, so its page is not fetched again.
                    await self.store.add(key, None, source.name)
            except Exception as exc:  # noqa: BLE001 - the store's failure is the entry's deferral
                self._claimed_content.discard(fingerprint)
                self._defer(source, "dedup_unavailable", report, error=str(exc))
                return None
            if copy:
                self._claimed_content.discard(fingerprint)
                self._skip_duplicate("content", report)
                return None
        summary = entry.summary or (extracted.description if extracted else "") or _lead(text)
        return _Article(
            source=source,
            key=key,
            url=canonical_url(entry.url, keep_trailing_slash=True),
            fingerprint=fingerprint,
            title=title,
            summary=_lead(summary, MAX_SUMMARY_CHARS),
            text=text,
            published_at=entry.published_at or (extracted.date if extracted else None),
            tags=list(clean_tags(list(entry.tags), list(extracted.tags) if extracted else [])),
            mentions=self.mentions.find(f"{title}\n{text}"),
        )

    # -- sentiment and publishing ---------------------------------------------------------------

    async def _score(self, articles: Sequence[_Article]) -> list[SentimentResult]:
        assert self.backend is not None
        backend = self.backend
        texts = [article_text(a.title, a.summary, a.text) for a in articles]
        results: list[SentimentResult] = []
        size = self.settings.sentiment_batch_size
        # One batch at a time, daemon-wide: a model already uses every core for one batch.
        async with self._sentiment_lock:
            for start in range(0, len(texts), size):
                batch = texts[start : start + size]
                started = time.perf_counter()
                results.extend(await asyncio.to_thread(backend.score_batch, batch))
                self.metrics.sentiment_latency.observe(time.perf_counter() - started)
        return results

    async def _score_and_publish(self, articles: list[_Article], report: PollReport) -> None:
        if not articles:
            return
        articles.sort(key=lambda a: a.published_at or 0.0)  # oldest first, as they happened
        try:
            scores = await self._score(articles)
        except Exception as exc:  # noqa: BLE001 - deferred: the next poll scores them again
            log.error("sentiment scoring failed", error=f"{type(exc).__name__}: {exc}")
            for article in articles:
                self._defer(article.source, "sentiment_failed", report)
            return
        scraped_at = time.time()
        pending: list[tuple[_Article, asyncio.Future[Any]]] = []
        for article, score in zip(articles, scores, strict=True):
            try:
                payload = self._payload(article, score, scraped_at)
                future = await self.producer.publish(payload, event_id=_event_id(article.key))
            except EnvelopeError as exc:
                self._release(article)
                self._abandoned.set(article.key, 1)
                self._drop(article.source, "invalid", report, url=article.url, error=str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - producer stopping under us
                self._release(article)
                self._defer(article.source, "delivery_failed", report, error=str(exc))
                continue
            pending.append((article, future))
        for article, future in pending:
            try:
                await future
            except DeliveryError as exc:
                self._release(article)
                if "stopped" in exc.reason:
                    self._defer(article.source, "delivery_failed", report, error=exc.reason)
                else:
                    self._abandoned.set(article.key, 1)
                    self._drop(article.source, "rejected", report, url=article.url, error=str(exc))
                continue
            try:
                await self.store.add(article.key, article.fingerprint, article.source.name)
            except Exception as exc:  # noqa: BLE001 - published; a restart may publish it again
                log.error("could not remember a published article", url=article.url, error=str(exc))
            finally:
                self._release(article)
            self.metrics.published.labels(article.source.name).inc()
            report.published += 1

    def _release(self, article: _Article) -> None:
        """Give up the article's content claim (its store entry, if any, now speaks for it)."""
        if article.fingerprint is not None:
            self._claimed_content.discard(article.fingerprint)

    def _payload(self, article: _Article, score: SentimentResult, scraped_at: float) -> RawArticle:
        published_at = article.published_at
        if published_at is not None and published_at > scraped_at + (
            self.settings.scraper_future_tolerance_s
        ):
            self.metrics.future_dates.labels(article.source.name).inc()
            log.info(
                "future date clamped",
                source=article.source.name,
                url=article.url,
                published_at=published_at,
            )
            published_at = scraped_at
        return RawArticle(
            id=article.key,
            title=article.title,
            url=article.url,
            website=article.source.name,
            summary=article.summary,
            content=ArticleContent(text=article.text),
            published_at=published_at if published_at and published_at > 0 else None,
            scraped_at=scraped_at,
            tags=article.tags,
            sentiment=Sentiment(
                score=round(max(-1.0, min(1.0, score.score)), 4), label=score.label
            ),
            cryptocurrencies_mentioned=list(dict.fromkeys(article.mentions)),
        )

    # -- conditional GET state ------------------------------------------------------------------

    def _load_validators(self) -> None:
        path = self.settings.validators_file
        urls = {source.url for source in self.sources.enabled}
        try:
            data = json.loads(path.read_text())
            self.fetcher.validators = {
                url: Validators(value.get("etag"), value.get("last_modified"))
                for url, value in data.items()
                if url in urls and isinstance(value, dict)
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as exc:
            # Costs one full fetch of each feed, nothing else.
            log.warning("feed validators unreadable, starting without", error=str(exc))

    def _save_validators(self) -> None:
        path = self.settings.validators_file
        data = {
            url: {"etag": v.etag, "last_modified": v.last_modified}
            for url, v in self.fetcher.validators.items()
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, sort_keys=True))
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("feed validators not saved", error=str(exc))
