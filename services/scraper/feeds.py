"""Feed parsing: RSS and Atom through feedparser, JSON Feed (1.0 and 1.1) by hand.

Everything a feed says about an entry becomes a :class:`FeedEntry` with plain-text fields and
epoch-second dates, so the rest of the scraper never sees a feed format. Feeds in the wild are
often malformed: feedparser's loose parser recovers what it can, and a feed is only refused
(:class:`FeedError`) when nothing usable is left.
"""

from __future__ import annotations

import calendar
import html
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit

import feedparser
import msgspec

FeedKind = Literal["rss", "atom", "json", "unknown"]

JSON_FEED_VERSION_PREFIX: Final = "https://jsonfeed.org/version/1"
# Tags are labels downstream: a runaway category list or a paragraph posing as a tag is noise.
MAX_TAGS: Final = 20
MAX_TAG_LENGTH: Final = 64


class FeedError(Exception):
    """A feed with nothing usable in it; ``kind`` is a bounded reason for metric labels."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One article as its feed describes it. Text fields are plain text, never HTML."""

    url: str
    title: str
    summary: str
    #: The full text when the feed carries it (content:encoded, Atom content, content_text).
    content: str
    published_at: float | None
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class ParsedFeed:
    kind: FeedKind
    title: str
    entries: list[FeedEntry]
    #: Entries dropped as unusable (no link, a link that is not http(s), a malformed item).
    skipped: int = 0
    #: Set when the document was malformed but entries could still be recovered.
    warning: str | None = None


# -- text helpers ---------------------------------------------------------------------------------

_BLOCK_TAGS: Final = re.compile(
    r"<\s*(?:br|/p|/div|/li|/h[1-6]|/blockquote|/tr|/section|/article)\b[^>]*>", re.IGNORECASE
)
_DROPPED_ELEMENTS: Final = re.compile(
    r"<\s*(script|style|noscript|template)\b.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL
)
_TAG: Final = re.compile(r"<[^>]*>")
_SPACES: Final = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES: Final = re.compile(r"\n\s*\n+")


def html_to_text(markup: str) -> str:
    """Feed HTML (summaries, content:encoded) to readable plain text, paragraphs kept.

    Feed fragments are small and regular; a full HTML parser buys nothing here, and the article
    page itself goes through trafilatura, not this.
    """
    if "<" not in markup and "&" not in markup:
        return _squeeze(markup)
    text = _DROPPED_ELEMENTS.sub(" ", markup)
    text = _BLOCK_TAGS.sub("\n", text)
    text = _TAG.sub(" ", text)
    return _squeeze(html.unescape(text))


def _squeeze(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_tags(*groups: object) -> tuple[str, ...]:
    """Lower-cased, trimmed, de-duplicated tags in first-seen order; comma lists are split."""
    tags: dict[str, None] = {}
    for group in groups:
        items = [group] if isinstance(group, str) else group
        if not isinstance(items, list | tuple):
            continue
        for item in items:
            if not isinstance(item, str):
                continue
            for part in item.split(","):
                tag = " ".join(html.unescape(part).split()).casefold()
                if tag and len(tag) <= MAX_TAG_LENGTH:
                    tags[tag] = None
    return tuple(tags)[:MAX_TAGS]


def _absolute_http_url(link: object, base: str | None) -> str | None:
    """``link`` as an absolute http(s) URL, resolved against ``base`` (None: must be absolute
    already, as for ids: an id like "post-42" is a name, not a path on the feed's host)."""
    if not isinstance(link, str) or not link.strip():
        return None
    url = link.strip() if base is None else urljoin(base, link.strip())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def parse_iso_date(value: object) -> float | None:
    """RFC 3339 / ISO 8601 to epoch seconds; a date without a zone is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.timestamp()
    return stamp if stamp > 0 else None


# -- detection ------------------------------------------------------------------------------------


def looks_like_json(body: bytes, content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime.endswith(("/json", "+json")):
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse_feed(body: bytes, *, url: str, content_type: str = "") -> ParsedFeed:
    """Parse a feed document fetched from ``url``; raise :class:`FeedError` if nothing usable."""
    if looks_like_json(body, content_type):
        return parse_json_feed(body, url=url)
    return parse_xml_feed(body, url=url, content_type=content_type)


# -- RSS and Atom ---------------------------------------------------------------------------------


def _struct_time_to_epoch(value: object) -> float | None:
    if not isinstance(value, time.struct_time):
        return None
    stamp = float(calendar.timegm(value))  # feedparser normalises to UTC
    return stamp if stamp > 0 else None


def parse_xml_feed(body: bytes, *, url: str, content_type: str = "") -> ParsedFeed:
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # Bytes in, never a URL: feedparser must not fetch anything itself.
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False)
    version = str(parsed.get("version") or "")
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    kind: FeedKind = (
        "atom" if version.startswith("atom") else "rss" if version.startswith("rss") else "unknown"
    )
    entries: list[FeedEntry] = []
    skipped = 0
    for item in parsed.get("entries", []):
        entry = _xml_entry(item, url)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    if not entries:
        if not version:
            raise FeedError("not_a_feed", "neither RSS, Atom nor JSON Feed")
        if problem is not None:
            raise FeedError("malformed", f"{type(problem).__name__}: {problem}")
    feed = parsed.get("feed", {})
    return ParsedFeed(
        kind=kind,
        title=html_to_text(str(feed.get("title", ""))),
        entries=entries,
        skipped=skipped,
        warning=None if problem is None else f"{type(problem).__name__}: {problem}",
    )


def _detail_text(item: Any, key: str) -> str:
    """A title or summary as text: feedparser says whether it is HTML or already plain (a plain
    "BTC < $100k" title must not lose its "<")."""
    value = str(item.get(key) or "")
    detail = item.get(f"{key}_detail") or {}
    kind = str(detail.get("type", "text/html")) if isinstance(detail, dict) else "text/html"
    return html_to_text(value) if "html" in kind else _squeeze(value)


def _xml_entry(item: Any, base: str) -> FeedEntry | None:
    link = _absolute_http_url(item.get("link"), base)
    if link is None:
        # Some feeds carry the permalink only as the guid/id.
        guid = item.get("id")
        link = _absolute_http_url(guid, None) if item.get("guidislink", True) else None
    if link is None:
        return None
    content_parts = [
        part.get("value", "")
        for part in item.get("content", [])
        if isinstance(part, dict) and part.get("value")
    ]
    content = html_to_text(max(content_parts, key=len)) if content_parts else ""
    published = _struct_time_to_epoch(item.get("published_parsed")) or _struct_time_to_epoch(
        item.get("updated_parsed")
    )
    tags = clean_tags([tag.get("term") or tag.get("label") for tag in item.get("tags", [])])
    return FeedEntry(
        url=link,
        title=_detail_text(item, "title"),
        summary=_detail_text(item, "summary"),
        content=content,
        published_at=published,
        tags=tags,
    )


# -- JSON Feed ------------------------------------------------------------------------------------


class _JsonFeedItem(msgspec.Struct, forbid_unknown_fields=False):
    # The spec says id is a string; integers are common in the wild and harmless.
    id: str | int | None = None
    url: str | None = None
    external_url: str | None = None
    title: str | None = None
    content_html: str | None = None
    content_text: str | None = None
    summary: str | None = None
    date_published: str | None = None
    date_modified: str | None = None
    tags: list[str] | None = None


def parse_json_feed(body: bytes, *, url: str) -> ParsedFeed:
    """A JSON Feed (https://jsonfeed.org/version/1.1); items that fail validation are skipped."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise FeedError("malformed", f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FeedError("not_a_feed", "JSON document is not an object")
    version = document.get("version")
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION_PREFIX):
        raise FeedError("not_a_feed", f"not a JSON Feed (version {version!r})")
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError("malformed", "JSON Feed without an items list")
    entries: list[FeedEntry] = []
    skipped = 0
    for raw in items:
        try:
            item = msgspec.convert(raw, _JsonFeedItem)
        except msgspec.ValidationError:
            skipped += 1
            continue
        link = (
            _absolute_http_url(item.url, url)
            or _absolute_http_url(item.external_url, url)
            or _absolute_http_url(item.id, None)
        )
        if link is None:
            skipped += 1
            continue
        content = item.content_text or (html_to_text(item.content_html or ""))
        entries.append(
            FeedEntry(
                url=link,
                title=html_to_text(item.title or ""),
                summary=html_to_text(item.summary or ""),
                content=_squeeze(content),
                published_at=parse_iso_date(item.date_published)
                or parse_iso_date(item.date_modified),
                tags=clean_tags(item.tags or []),
            )
        )
    if not entries and items:
        raise FeedError("malformed", f"none of the {len(items)} items is usable")
    title = document.get("title")
    return ParsedFeed(
        kind="json",
        title=title if isinstance(title, str) else "",
        entries=entries,
        skipped=skipped,
    )
