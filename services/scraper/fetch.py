"""HTTP fetching for feeds and article pages: one shared aiohttp session, polite and bounded.

- Per-host concurrency: a semaphore per host, taken per request (never across a backoff sleep),
  so one slow site cannot hold every connection, and no site sees more than
  ``CRYPTOVIZ_SCRAPER_PER_HOST_CONCURRENCY`` requests from us at once. The timeout starts once
  the slot is held: waiting for our own queue is not the site being slow.
- Retries only where another try may succeed (timeouts, connection errors, 5xx, 429), with capped
  full-jitter backoff; ``Retry-After`` is honoured when it is within the cap.
- Conditional GET for feeds: the ETag and Last-Modified of the last 200 are sent back, and an
  unchanged feed answers 304 with no body.
- Bodies are streamed and abandoned past ``CRYPTOVIZ_SCRAPER_MAX_BODY_BYTES`` (after
  decompression, so a compression bomb stops at the same limit).
- Redirects are followed by hand, at most ``CRYPTOVIZ_SCRAPER_MAX_REDIRECTS`` hops, so every hop
  is checked against its own host's robots.txt and concurrency limit.
- robots.txt (RFC 9309) is fetched per scheme+host and cached for
  ``CRYPTOVIZ_SCRAPER_ROBOTS_TTL_S``: 2xx is parsed, 4xx allows everything, 5xx disallows
  everything, and an unreachable robots.txt allows (briefly cached, so a site that comes back is
  re-read soon).

Every fetch ends in a :class:`FetchResult` whose ``status`` is one of a few classes (the
``status`` label of ``cryptoviz_scraper_fetches_total``); nothing here raises for a bad site.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.robotparser
from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog

from services.scraper.settings import ScraperSettings
from shared.backoff import full_jitter_backoff

log = structlog.get_logger(__name__)

# The status classes: bounded, so they can be a metric label.
Status = Literal["200", "304", "4xx", "5xx", "timeout", "error", "too_large", "robots"]
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# Errors of the site's own making that the same request will meet again.
_FINAL_ERRORS: Final = frozenset({"too_many_redirects", "bad_redirect"})
CHUNK_BYTES: Final = 64 * 1024
# Google reads the first 500 KiB of a robots.txt and ignores the rest; so do we.
ROBOTS_MAX_BYTES: Final = 500 * 1024
# A robots.txt that could not be read (5xx, unreachable) is asked again sooner than a good one.
ROBOTS_FAILURE_TTL_S: Final = 300.0
FEED_ACCEPT: Final = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT: Final = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclasses.dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    status: Status
    #: Where the body came from, after redirects.
    final_url: str = ""
    http_status: int | None = None
    body: bytes = b""
    content_type: str = ""
    #: The charset the Content-Type header declared, if any.
    charset: str | None = None
    attempts: int = 1
    error: str | None = None
    #: Validators of a 200, for the next conditional GET.
    etag: str | None = None
    last_modified: str | None = None
    #: Seconds a 429/503 asked us to wait (Retry-After), when it said so in seconds.
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "200"

    @property
    def transient(self) -> bool:
        """A failure another try later may not have (the page may still be fine)."""
        return self.status in ("5xx", "timeout", "error")


@dataclasses.dataclass(frozen=True, slots=True)
class Validators:
    """What a 200 said about a feed's version, sent back as If-None-Match/If-Modified-Since."""

    etag: str | None = None
    last_modified: str | None = None


class _TooLarge(Exception):
    def __init__(self, partial: bytes) -> None:
        self.partial = partial


@dataclasses.dataclass(slots=True)
class _Robots:
    parser: urllib.robotparser.RobotFileParser | None  # None: the policy is ``allow_all``
    allow_all: bool
    expires_at: float
    reason: str


class Fetcher:
    """Fetches URLs on one shared session. ``start`` before use; ``close`` once at the end."""

    def __init__(self, settings: ScraperSettings) -> None:
        self.settings = settings
        self.user_agent = settings.scraper_user_agent
        # The product token robots.txt groups are matched against ("cryptoviz-scraper").
        self.robots_agent = self.user_agent.split("/", 1)[0].split()[0]
        self.validators: dict[str, Validators] = {}
        self._session: aiohttp.ClientSession | None = None
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._robots: dict[str, _Robots] = {}
        self._robots_pending: dict[str, asyncio.Future[_Robots]] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self.settings.scraper_max_connections, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.user_agent},
            # Cookies would make one fetch depend on the last (consent walls, A/B buckets).
            cookie_jar=aiohttp.DummyCookieJar(),
            # Production hosts may sit behind an HTTP proxy named by HTTPS_PROXY / NO_PROXY.
            trust_env=True,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def running(self) -> bool:
        return self._session is not None

    # -- fetching -------------------------------------------------------------------------------

    async def fetch(self, url: str, *, feed: bool = False) -> FetchResult:
        """GET ``url`` with retries; ``feed`` adds conditional headers and remembers validators."""
        attempts = 1 + self.settings.scraper_retries
        result = FetchResult(url, "error", error="not attempted")
        for attempt in range(attempts):
            result = await self._fetch_once(url, feed=feed, attempt=attempt + 1)
            if not self._should_retry(result) or attempt + 1 == attempts:
                break
            delay = full_jitter_backoff(
                attempt, cap_s=self.settings.scraper_retry_max_s, base_s=1.0
            )
            delay = max(delay, self._retry_after(result))
            log.debug(
                "fetch failed, retrying",
                url=url,
                status=result.status,
                error=result.error,
                retry_in_s=round(delay, 2),
            )
            await asyncio.sleep(delay)
        if feed and result.ok:
            self._remember_validators(url, result)
        return result

    def _should_retry(self, result: FetchResult) -> bool:
        if result.error in _FINAL_ERRORS:
            return False
        return result.status in ("timeout", "error") or result.http_status in _RETRY_STATUSES

    def _retry_after(self, result: FetchResult) -> float:
        wanted = result.retry_after_s
        if wanted is not None and wanted <= self.settings.scraper_retry_max_s:
            return wanted
        return 0.0

    def _remember_validators(self, url: str, result: FetchResult) -> None:
        if result.etag or result.last_modified:
            self.validators[url] = Validators(result.etag, result.last_modified)
        else:
            self.validators.pop(url, None)

    async def _fetch_once(self, url: str, *, feed: bool, attempt: int) -> FetchResult:
        if self._session is None:
            raise RuntimeError("fetcher is not started")
        headers = {"Accept": FEED_ACCEPT if feed else PAGE_ACCEPT}
        known = self.validators.get(url) if feed else None
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        current = url
        for _hop in range(self.settings.scraper_max_redirects + 1):
            if not await self.allowed(current):
                return FetchResult(url, "robots", final_url=current, attempts=attempt)
            result, location = await self._request(current, headers)
            if location is None:
                return dataclasses.replace(result, url=url, final_url=current, attempts=attempt)
            current = location
        return FetchResult(
            url, "error", final_url=current, attempts=attempt, error="too_many_redirects"
        )

    def _host_slot(self, url: str) -> asyncio.Semaphore:
        host = _authority(url)
        slot = self._hosts.get(host)
        if slot is None:
            slot = asyncio.Semaphore(self.settings.scraper_per_host_concurrency)
            self._hosts[host] = slot
        return slot

    async def _request(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        max_bytes: int | None = None,
        keep_partial: bool = False,
    ) -> tuple[FetchResult, str | None]:
        """One GET without following redirects: the result, and the redirect target if any."""
        assert self._session is not None
        limit = max_bytes or self.settings.scraper_max_body_bytes
        timeout = aiohttp.ClientTimeout(
            total=self.settings.scraper_timeout_s,
            sock_connect=self.settings.scraper_connect_timeout_s,
        )
        async with self._host_slot(url):
            try:
                async with self._session.get(
                    url, headers=headers, allow_redirects=False, timeout=timeout
                ) as response:
                    return await self._response(url, response, limit, keep_partial)
            except TimeoutError:
                return FetchResult(url, "timeout", error="timeout"), None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # ValueError: aiohttp refuses some malformed URLs and headers with it.
                error = f"{type(exc).__name__}: {exc}"[:200]
                return FetchResult(url, "error", error=error), None

    async def _response(  # noqa: PLR0911 - one return per kind of answer reads best
        self, url: str, response: aiohttp.ClientResponse, limit: int, keep_partial: bool
    ) -> tuple[FetchResult, str | None]:
        status = response.status
        if status in _REDIRECTS and "Location" in response.headers:
            target = urljoin(url, response.headers["Location"])
            if urlsplit(target).scheme not in ("http", "https"):
                return FetchResult(url, "error", http_status=status, error="bad_redirect"), None
            return FetchResult(url, "error", http_status=status), target
        if status == 304:
            return FetchResult(url, "304", http_status=304), None
        if status >= 400:
            retry_after = response.headers.get("Retry-After", "").strip()
            return FetchResult(
                url,
                "5xx" if status >= 500 else "4xx",
                http_status=status,
                error=f"http {status}",
                retry_after_s=float(retry_after) if retry_after.isdigit() else None,
            ), None
        if not 200 <= status < 300:
            return FetchResult(url, "error", http_status=status, error=f"http {status}"), None
        try:
            body = await _read_capped(response, limit)
        except _TooLarge as exc:
            response.close()  # drop the connection: the rest of the body is unread
            return FetchResult(
                url,
                "too_large",
                http_status=status,
                body=exc.partial if keep_partial else b"",
                content_type=response.content_type,
                charset=response.charset,
                error=f"body above {limit} bytes",
            ), None
        return FetchResult(
            url,
            "200",
            http_status=status,
            body=body,
            content_type=response.content_type,
            charset=response.charset,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        ), None

    # -- robots.txt -----------------------------------------------------------------------------

    async def allowed(self, url: str) -> bool:
        """Whether robots.txt of ``url``'s host lets us fetch it."""
        policy = await self._robots_for(_authority(url))
        if policy.allow_all or policy.parser is None:
            return policy.allow_all
        return policy.parser.can_fetch(self.robots_agent, url)

    async def _robots_for(self, authority: str) -> _Robots:
        cached = self._robots.get(authority)
        if cached is not None and cached.expires_at > time.monotonic():
            return cached
        pending = self._robots_pending.get(authority)
        if pending is not None:
            # One fetch per host, however many articles of it are waiting.
            return await asyncio.shield(pending)
        future: asyncio.Future[_Robots] = asyncio.get_running_loop().create_future()
        self._robots_pending[authority] = future
        try:
            policy = await self._fetch_robots(authority)
            future.set_result(policy)
        except BaseException:
            # Only cancellation gets here (a stopping daemon): the waiters stop with it.
            future.cancel()
            raise
        finally:
            self._robots_pending.pop(authority, None)
        self._robots[authority] = policy
        log.debug("robots.txt read", host=authority, policy=policy.reason)
        return policy

    async def _fetch_robots(self, authority: str) -> _Robots:
        url = f"{authority}/robots.txt"
        now = time.monotonic()
        ttl = self.settings.scraper_robots_ttl_s
        headers = {"Accept": "text/plain, */*;q=0.5"}
        current = url
        # RFC 9309 2.3.1.2: follow at least five redirects.
        for _hop in range(5):
            result, location = await self._request(
                current, headers, max_bytes=ROBOTS_MAX_BYTES, keep_partial=True
            )
            if location is None:
                break
            current = location
        else:
            return _Robots(None, True, now + ROBOTS_FAILURE_TTL_S, "too many redirects: allow")
        if result.status in ("200", "too_large"):
            parser = urllib.robotparser.RobotFileParser(url)
            parser.parse(result.body.decode("utf-8", errors="replace").splitlines())
            return _Robots(parser, False, now + ttl, "parsed")
        if result.status == "4xx":
            return _Robots(None, True, now + ttl, f"http {result.http_status}: allow")
        if result.status == "5xx":
            log.warning("robots.txt unavailable, not fetching from the host", host=authority)
            return _Robots(None, False, now + min(ttl, ROBOTS_FAILURE_TTL_S), "5xx: disallow")
        return _Robots(None, True, now + min(ttl, ROBOTS_FAILURE_TTL_S), "unreachable: allow")


def _authority(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise _TooLarge(b"")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            chunks.append(chunk)
            raise _TooLarge(b"".join(chunks)[:limit])
        chunks.append(chunk)
    return b"".join(chunks)
