"""A fake crypto news site: the scraper's counterpart in tests and offline demos.

One local aiohttp server with the three feed formats and the article pages they link to, and
every way a real site goes wrong:

- ``/feeds/rss.xml`` (RSS 2.0): a clearly positive BTC story, a clearly negative ETH story, a
  neutral SOL story full of traps for a careless mention finder ("method", "solution"), a story
  without any date, one dated two days in the future, the BTC story listed a second time under a
  tracking-parameter URL, and entries whose pages fail: 404, 500, a page slower than any sane
  timeout, an endless body, a page without an article, and a page robots.txt disallows;
- ``/feeds/atom.xml`` (Atom 1.0): a neutral story without mentions, and the BTC story syndicated
  under another URL and title (the same text: only a content fingerprint catches it);
- ``/feeds/feed.json`` (JSON Feed 1.1): an ADA story, a page served as windows-1252 with a
  ``charset=ISO-8859-1`` header (browsers and the scraper read it as windows-1252), and an item
  without a URL;
- ``/feeds/broken.xml``: not a well-formed feed, nothing usable in it; ``/feeds/missing.xml``: 404;
- ``/robots.txt`` disallows ``/private/``; ``robots_status`` makes it answer an error instead;
- feeds and pages carry ETag and Last-Modified and answer conditional requests with 304;
- ``/redirect/<n>`` redirects n times before landing on the BTC story; ``/redirect/loop`` never
  lands.

``hits`` counts requests per path, ``statuses`` answers per status and ``max_in_flight`` the
most requests answered at once, so tests can check what a client did (robots honoured, 304s
received, per-host limits kept). :meth:`FakeNewsSite.add_article` publishes a
new story in the RSS feed while the site runs.

Run it: ``cryptoviz fake-news --port 8766`` (``--help``); ``--print-sources`` prints a sources
file for ``CRYPTOVIZ_SCRAPER_SOURCES`` pointing at it.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import html
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self
from xml.sax.saxutils import escape

from aiohttp import web
from aiohttp.typedefs import Handler

DEFAULT_PORT: Final = 8766
SITE_NAME: Final = "Fake Crypto News"
HOUR: Final = 3600.0
DAY: Final = 86_400.0
HUGE_CHUNK: Final = b"<p>" + b"All work and no play makes a dull page. " * 1600 + b"</p>\n"
HUGE_LIMIT_BYTES: Final = 1024**3  # "endless" for any client with a size cap
BTC_PATH: Final = "/articles/bitcoin-record-high"


@dataclass(frozen=True, slots=True)
class FakeArticle:
    """One story. ``age_s``: how long ago it was published (negative: in the future; None: no
    date anywhere, neither in the feed nor on the page)."""

    path: str
    title: str
    paragraphs: tuple[str, ...]
    summary: str = ""
    tags: tuple[str, ...] = ()
    age_s: float | None = HOUR
    #: Served as the page body when set, instead of the article template.
    raw_html: str | None = None
    #: The page's encoding (the header says ISO-8859-1 when this is cp1252, as sites do).
    encoding: str = "utf-8"


# -- the stories ----------------------------------------------------------------------------------

BTC_PARAGRAPHS: Final = (
    "Bitcoin soared to a record high on Tuesday, and investors celebrated one of the best weeks "
    "the market has ever seen. BTC gained twelve percent in five days as demand surged and "
    "confidence returned to every corner of the market.",
    "Analysts were overwhelmingly optimistic. They praised the strong inflows into the new funds "
    "and called the rally a healthy, well supported advance with excellent momentum.",
    "Traders said the mood was joyful and bullish. Many expect further gains, and several desks "
    "raised their targets after the impressive breakout to an all-time high.",
)
ETH_PARAGRAPHS: Final = (
    "Ethereum crashed on Friday after a devastating hack drained a major exchange, leaving "
    "thousands of investors with terrible losses. ETH plunged twenty percent in a panic selloff.",
    "The attackers exploited a critical flaw and stole funds from customer wallets. Victims said "
    "they were furious and afraid, and the exchange halted withdrawals amid fears of insolvency.",
    "Regulators opened a probe and a class action lawsuit followed. Analysts warned that the "
    "damage to trust would be severe and that the crisis could get worse before it ends.",
)
# Neutral on purpose, traps included: "method" holds ETH's letters, "solution" and "isolated"
# SOL's; a lexicon sees "solution" (+1.3) and "isolated" (-1.3) cancel out.
SOL_PARAGRAPHS: Final = (
    "Solana (SOL) developers published version 2.1 of the validator client on Wednesday. The "
    "release describes a method for scheduling leader slots and a storage solution for ledger "
    "snapshots.",
    "The notes list the method signatures that changed and the steps for validators that run "
    "isolated from the public network.",
    "The release will roll out to the main cluster over the coming weeks, according to the "
    "published schedule. The documentation describes each step of the process.",
)
MARKET_PARAGRAPHS: Final = (
    "This weekly note lists the scheduled events for Bitcoin and Ethereum over the next seven "
    "days. It covers futures expiries, scheduled network upgrades and the publication dates of "
    "monthly reports.",
    "The calendar is compiled from public announcements. Times are given in UTC and may move if "
    "the organisers publish new dates.",
    "Readers can find the previous editions of the calendar in the archive section of the site.",
)
FUTURE_PARAGRAPHS: Final = (
    "A Bitcoin conference will open its registration next month, the organisers said in a "
    "statement. The programme lists sessions on custody, payments and mining.",
    "The event will take place over three days in Lisbon. Tickets will be sold online, and the "
    "schedule of the sessions will be published in the coming weeks.",
    "The organisers said speakers would be announced in batches as they confirm their travel.",
)
REGULATION_PARAGRAPHS: Final = (
    "A parliamentary committee will hold a roundtable on crypto market rules next Thursday. The "
    "session will be streamed and the transcript published afterwards.",
    "The committee invited representatives of exchanges, custodians and consumer groups. Each "
    "participant will present a written statement of up to ten pages.",
    "The committee said the roundtable is part of a consultation that closes at the end of the "
    "quarter, after which a report will be drafted.",
)
PARTNER_TITLE: Final = "Partner desk: BTC at a record as buyers return"
ADA_PARAGRAPHS: Final = (
    "Cardano (ADA) holders will vote on a funding proposal next week, according to the "
    "governance calendar. The proposal asks for funding of developer tooling.",
    "Voting opens on Monday and closes after six epochs. Results will be tallied on chain and "
    "published by the governance committee.",
    "The proposal text, the budget and the list of deliverables are available on the forum.",
)
# Written for a windows-1252 page: the euro sign is 0x80 there and does not exist in latin-1.
CAFE_PARAGRAPHS: Final = (
    "A café in Zürich now accepts Bitcoin for coffee and pastries. A cappuccino costs 5 € or its "
    "equivalent in BTC at the moment of payment, the owner said.",
    "The owner, Anaïs Müller, said the terminal was installed in an afternoon. Customers pay "
    "with a phone and receive a printed receipt with the amount in both currencies.",
    "The café opens at seven every morning and closes at six, except on Sundays.",
)
NO_ARTICLE_HTML: Final = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Markets | Fake Crypto News</title>"
    "</head><body><nav><a href='/'>Home</a> <a href='/markets'>Markets</a> "
    "<a href='/about'>About</a></nav><div class='ticker-widget'>Loading prices</div>"
    "<footer>Subscribe to our newsletter</footer></body></html>"
)


def default_articles() -> list[FakeArticle]:
    """The RSS feed's stories, in feed order (newest first, as feeds list them)."""
    return [
        FakeArticle(
            BTC_PATH,
            "Bitcoin soars to a record high as investors celebrate",
            BTC_PARAGRAPHS,
            summary="BTC gained twelve percent in five days as demand surged.",
            tags=("Bitcoin", "Markets"),
            age_s=1 * HOUR,
        ),
        FakeArticle(
            "/articles/ethereum-exchange-hack",
            "Ethereum crashes after devastating exchange hack",
            ETH_PARAGRAPHS,
            summary="ETH plunged twenty percent in a panic selloff.",
            tags=("Ethereum", "Security"),
            age_s=2 * HOUR,
        ),
        FakeArticle(
            "/articles/solana-validator-release",
            "Solana developers publish validator client 2.1",
            SOL_PARAGRAPHS,
            summary="The release describes a new scheduling method.",
            tags=("Solana", "Development"),
            age_s=3 * HOUR,
        ),
        FakeArticle(
            "/articles/weekly-calendar",
            "Weekly calendar: scheduled events",
            MARKET_PARAGRAPHS,
            tags=("Calendar",),
            age_s=None,
        ),
        FakeArticle(
            "/articles/conference-registration",
            "Bitcoin conference to open registration",
            FUTURE_PARAGRAPHS,
            tags=("Events",),
            age_s=-2 * DAY,
        ),
    ]


# Entries of the RSS feed whose pages fail: (path, title, summary). Summaries are what the
# scraper can still publish when the page itself is out of reach for good.
BROKEN_ENTRIES: Final = (
    ("/status/404", "A story that was taken down", "The page of this story no longer exists."),
    ("/status/500", "A story on a failing server", "The server of this story is failing."),
    ("/slow/story", "A story on a slow server", "The server of this story is very slow."),
    ("/huge/story", "A story with an endless page", "The page of this story never ends."),
    ("/markets/overview", "Market overview", ""),
    ("/private/members-only", "Members-only analysis", "An analysis for members only."),
)


class FakeNewsSite:
    """The fake site. ``async with FakeNewsSite() as site`` or ``start``/``stop``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_s: float = 30.0,
        robots_status: int = 200,
    ) -> None:
        self._host = host
        self._port = port
        self.slow_s = slow_s
        self.robots_status = robots_status
        self.started_at = time.time()
        self.articles: list[FakeArticle] = default_articles()
        self.hits: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.user_agents: set[str] = set()
        #: Requests being answered now, and the most at once (per-host limits of a client).
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._app = web.Application(middlewares=[self._count])
        routes = [
            web.get("/robots.txt", self._robots),
            web.get("/feeds/rss.xml", self._rss),
            web.get("/feeds/atom.xml", self._atom),
            web.get("/feeds/feed.json", self._json_feed),
            web.get("/feeds/broken.xml", self._broken_feed),
            web.get("/status/{code:\\d+}", self._status),
            web.get("/slow/{slug}", self._slow),
            web.get("/huge/{slug}", self._huge),
            web.get("/redirect/{hops}", self._redirect),
            web.get("/{path:.*}", self._page),
        ]
        self._app.add_routes(routes)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        # A short shutdown timeout: slow and endless handlers are cut off, not waited for.
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and cut every open request. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def feed_url(self, name: str) -> str:
        """``rss``, ``atom``, ``json``, ``broken`` or ``missing``."""
        files = {"json": "feed.json", "rss": "rss.xml", "atom": "atom.xml"}
        return f"{self.url}/feeds/{files.get(name, name + '.xml')}"

    def add_article(self, article: FakeArticle) -> None:
        """Publish a new story at the top of the RSS feed (its ETag changes)."""
        self.articles.insert(0, article)

    # -- helpers --------------------------------------------------------------------------------

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.user_agents.add(request.headers.get("User-Agent", ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.statuses[exc.status] += 1
            raise
        finally:
            self.in_flight -= 1
        self.statuses[response.status] += 1
        return response

    def _date(self, age_s: float | None) -> datetime | None:
        if age_s is None:
            return None
        return datetime.fromtimestamp(self.started_at - age_s, UTC)

    def _conditional(
        self, request: web.Request, body: bytes, content_type: str, charset: str | None = None
    ) -> web.Response:
        """A 200 with validators, or a 304 when the client already has this version."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        last_modified = email.utils.formatdate(self.started_at, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        if request.headers.get("If-None-Match") == etag or (
            "If-None-Match" not in request.headers
            and request.headers.get("If-Modified-Since") == last_modified
        ):
            return web.Response(status=304, headers=headers)
        response = web.Response(body=body, headers=headers, content_type=content_type)
        if charset:
            response.charset = charset
        return response

    def render_page(self, article: FakeArticle, title: str | None = None) -> str:
        """The article page as the site serves it (a plain news template)."""
        title = title or article.title
        published = self._date(article.age_s)
        meta = [f'<meta name="description" content="{html.escape(article.summary)}">']
        if published is not None:
            meta.append(
                f'<meta property="article:published_time" content="{published.isoformat()}">'
            )
        if article.tags:
            meta.append(f'<meta name="keywords" content="{html.escape(", ".join(article.tags))}">')
        charset = "windows-1252" if article.encoding == "cp1252" else article.encoding
        paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in article.paragraphs)
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="{charset}">'
            f"<title>{html.escape(title)} | {SITE_NAME}</title>{''.join(meta)}</head>\n"
            f'<body><header><nav><a href="/">Home</a> <a href="/markets/overview">Markets</a>'
            f"</nav></header>\n<main><article><h1>{html.escape(title)}</h1>\n{paragraphs}\n"
            f"</article></main>\n<footer><p>{SITE_NAME}. All rights reserved.</p></footer>"
            "</body></html>\n"
        )

    # -- feeds ----------------------------------------------------------------------------------

    def _rss_items(self) -> list[str]:
        items: list[str] = []

        def item(
            link: str, title: str, summary: str, age_s: float | None, tags: Sequence[str]
        ) -> str:
            parts = [f"<title>{escape(title)}</title>", f"<link>{escape(link)}</link>"]
            parts.append(f'<guid isPermaLink="true">{escape(link)}</guid>')
            if summary:
                parts.append(
                    f"<description>{escape(f'<p>{html.escape(summary)}</p>')}</description>"
                )
            published = self._date(age_s)
            if published is not None:
                parts.append(f"<pubDate>{email.utils.format_datetime(published)}</pubDate>")
            parts += [f"<category>{escape(tag)}</category>" for tag in tags]
            return "<item>" + "".join(parts) + "</item>"

        for article in self.articles:
            items.append(
                item(
                    self.url + article.path,
                    article.title,
                    article.summary,
                    article.age_s,
                    article.tags,
                )
            )
        first = next(a for a in self.articles if a.path == BTC_PATH)
        # The same story again, as a campaign link: one URL once tracking is stripped.
        items.append(
            item(
                f"{self.url}{first.path}/?utm_source=rss&utm_medium=feed#comments",
                first.title,
                first.summary,
                first.age_s,
                first.tags,
            )
        )
        for path, title, summary in BROKEN_ENTRIES:
            items.append(item(self.url + path, title, summary, 5 * HOUR, ()))
        return items

    async def _rss(self, request: web.Request) -> web.Response:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>{SITE_NAME}</title><link>{self.url}/</link>"
            f"<description>Crypto news for tests</description>{''.join(self._rss_items())}"
            "</channel></rss>\n"
        ).encode()
        return self._conditional(request, body, "application/rss+xml", "utf-8")

    async def _atom(self, request: web.Request) -> web.Response:
        btc = next(a for a in self.articles if a.path == BTC_PATH)
        regulation = _regulation_article()
        entries = []
        for path, title, article in (
            (regulation.path, regulation.title, regulation),
            ("/partner/bitcoin-record-high", PARTNER_TITLE, btc),
        ):
            updated = self._date(article.age_s) or datetime.fromtimestamp(self.started_at, UTC)
            entries.append(
                f"<entry><title>{escape(title)}</title>"
                f'<link rel="alternate" href="{escape(self.url + path)}"/>'
                f"<id>{escape(self.url + path)}</id><updated>{updated.isoformat()}</updated>"
                f"<summary>{escape(article.summary)}</summary>"
                + "".join(f'<category term="{escape(tag)}"/>' for tag in article.tags)
                + "</entry>"
            )
        body = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{SITE_NAME} (Atom)</title><id>{self.url}/feeds/atom.xml</id>"
            f"<updated>{datetime.fromtimestamp(self.started_at, UTC).isoformat()}</updated>"
            f"{''.join(entries)}</feed>\n"
        ).encode()
        return self._conditional(request, body, "application/atom+xml", "utf-8")

    async def _json_feed(self, request: web.Request) -> web.Response:
        items = []
        for article in (_cardano_article(), _cafe_article()):
            published = self._date(article.age_s)
            items.append(
                {
                    "id": article.path,
                    "url": self.url + article.path,
                    "title": article.title,
                    "summary": article.summary,
                    "date_published": published.isoformat() if published else None,
                    "tags": list(article.tags),
                }
            )
        items.append({"id": "no-url", "title": "An item without a URL", "content_text": "x"})
        document = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": f"{SITE_NAME} (JSON)",
            "home_page_url": self.url + "/",
            "feed_url": self.url + "/feeds/feed.json",
            "items": items,
        }
        body = json.dumps(document, ensure_ascii=False).encode()
        return self._conditional(request, body, "application/feed+json", "utf-8")

    async def _broken_feed(self, request: web.Request) -> web.Response:
        body = b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>Broken<item><title>Half'
        return web.Response(body=body, content_type="application/rss+xml")

    # -- pages ----------------------------------------------------------------------------------

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots_status != 200:
            return web.Response(status=self.robots_status, text="robots unavailable")
        text = "User-agent: *\nDisallow: /private/\n\nUser-agent: BadBot\nDisallow: /\n"
        return web.Response(text=text, content_type="text/plain")

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_s)
        article = self.articles[0]
        return web.Response(text=self.render_page(article), content_type="text/html")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        # No Content-Length: the client only learns the size by reading.
        response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await response.prepare(request)
        await response.write(b"<!doctype html><html><body><article>")
        sent = 0
        try:
            while sent < HUGE_LIMIT_BYTES:
                await response.write(HUGE_CHUNK)
                sent += len(HUGE_CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        hops = request.match_info["hops"]
        if hops == "loop":
            raise web.HTTPFound("/redirect/loop")
        if not hops.isdigit():
            raise web.HTTPNotFound
        target = BTC_PATH if int(hops) <= 1 else f"/redirect/{int(hops) - 1}"
        raise web.HTTPMovedPermanently(target)

    async def _page(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        if path == "/markets/overview":
            return web.Response(text=NO_ARTICLE_HTML, content_type="text/html")
        if path == "/private/members-only":
            return web.Response(
                text=self.render_page(
                    FakeArticle(path, "Members-only analysis", REGULATION_PARAGRAPHS)
                ),
                content_type="text/html",
            )
        if path == "/partner/bitcoin-record-high":
            btc = next(a for a in self.articles if a.path == BTC_PATH)
            body = self.render_page(btc, title=PARTNER_TITLE).encode()
            return self._conditional(request, body, "text/html", "utf-8")
        pages = {a.path: a for a in (*self.articles, _regulation_article(), _cardano_article())}
        cafe = _cafe_article()
        if path == cafe.path:
            # The header says ISO-8859-1, the bytes are windows-1252 (the euro sign): what
            # browsers and real sites do.
            body = self.render_page(cafe).encode("cp1252")
            return self._conditional(request, body, "text/html", "ISO-8859-1")
        article = pages.get(path.rstrip("/"))
        if article is None:
            raise web.HTTPNotFound
        return self._conditional(request, self.render_page(article).encode(), "text/html", "utf-8")


def _regulation_article() -> FakeArticle:
    return FakeArticle(
        "/articles/committee-roundtable",
        "Committee schedules a roundtable on crypto market rules",
        REGULATION_PARAGRAPHS,
        summary="The session will be streamed and the transcript published.",
        tags=("Regulation",),
        age_s=4 * HOUR,
    )


def _cardano_article() -> FakeArticle:
    return FakeArticle(
        "/articles/cardano-funding-vote",
        "Cardano holders to vote on a funding proposal",
        ADA_PARAGRAPHS,
        summary="Voting opens on Monday and closes after six epochs.",
        tags=("Cardano", "Governance"),
        age_s=6 * HOUR,
    )


def _cafe_article() -> FakeArticle:
    return FakeArticle(
        "/articles/zurich-cafe-bitcoin",
        "A café in Zürich accepts Bitcoin",
        CAFE_PARAGRAPHS,
        summary="A cappuccino costs 5 € or its equivalent in BTC.",
        tags=("Bitcoin", "Payments"),
        age_s=7 * HOUR,
        encoding="cp1252",
    )


def sources_toml(site_url: str, *, poll_interval_s: float = 60.0, prefix: str = "Fake") -> str:
    """A sources file (``CRYPTOVIZ_SCRAPER_SOURCES``) for the fake site at ``site_url``."""
    feeds = (
        ("RSS", "/feeds/rss.xml", True),
        ("Atom", "/feeds/atom.xml", True),
        ("JSON", "/feeds/feed.json", True),
        ("Broken", "/feeds/broken.xml", True),
        ("Missing", "/feeds/missing.xml", True),
        ("Disabled", "/feeds/rss.xml", False),
    )
    lines = [
        f"# The fake news site at {site_url} (cryptoviz fake-news); offline demos and tests.",
        "[defaults]",
        f"poll_interval_s = {poll_interval_s}",
    ]
    for name, path, enabled in feeds:
        lines += [
            "",
            "[[source]]",
            f'name = "{prefix} {name}"',
            f'url = "{site_url}{path}"',
            f"enabled = {'true' if enabled else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A fake crypto news site (RSS, Atom, JSON Feed, article pages and broken "
        "cases) for offline demos and tests of cryptoviz-scraper.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (%(default)s)"
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=30.0,
        help="how long the slow page takes to answer (%(default)s)",
    )
    parser.add_argument(
        "--print-sources",
        action="store_true",
        help="print a sources file for CRYPTOVIZ_SCRAPER_SOURCES pointing at this site, and exit",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=60.0,
        help="poll interval written by --print-sources, seconds (%(default)s)",
    )
    return parser


async def _serve_until_signalled(site: FakeNewsSite) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with site:
            print(f"fake news site on {site.url} (feeds under /feeds/)", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """CLI entry point; returns 0 after SIGINT/SIGTERM, 1 if it cannot listen, 2 on bad usage."""
    args = build_parser(prog).parse_args(argv)
    if args.print_sources:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(
            sources_toml(f"http://{host}:{args.port}", poll_interval_s=args.poll_interval), end=""
        )
        return 0
    site = FakeNewsSite(host=args.host, port=args.port, slow_s=args.slow_seconds)
    try:
        asyncio.run(_serve_until_signalled(site))
    except OSError as exc:
        print(f"fake-news: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
