"""Feed parsing: JSON Feed by hand, RSS and Atom through feedparser, into plain FeedEntry values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.scraper.feeds import (
    FeedError,
    clean_tags,
    html_to_text,
    parse_feed,
    parse_iso_date,
    parse_json_feed,
)

FEED_URL = "https://news.example/feeds/feed.json"


def json_feed(*items: dict[str, Any], version: str = "https://jsonfeed.org/version/1.1") -> bytes:
    return json.dumps({"version": version, "title": "News", "items": list(items)}).encode()


def test_a_json_feed_item_becomes_an_entry() -> None:
    feed = parse_json_feed(
        json_feed(
            {
                "id": "42",
                "url": "/2024/01/btc",
                "title": "BTC &amp; friends",
                "summary": "Short summary.",
                "content_html": "<p>First <b>para</b>.</p><p>Second&nbsp;para.</p>",
                "date_published": "2024-01-15T10:00:00Z",
                "tags": ["Bitcoin", " MARKETS ", "bitcoin", "a, b"],
            }
        ),
        url=FEED_URL,
    )
    assert feed.kind == "json"
    assert feed.title == "News"
    [entry] = feed.entries
    assert entry.url == "https://news.example/2024/01/btc"  # relative to the feed
    assert entry.title == "BTC & friends"
    assert entry.summary == "Short summary."
    assert entry.content == "First para .\nSecond para."
    assert entry.published_at == 1705312800.0
    assert entry.tags == ("bitcoin", "markets", "a", "b")


def test_json_feed_fallbacks_and_skipped_items() -> None:
    feed = parse_json_feed(
        json_feed(
            {"id": "https://news.example/by-id", "content_text": "Text only."},
            {"id": 7, "external_url": "https://elsewhere.example/x", "date_modified": "2024-01-15"},
            {"id": "no-link", "title": "An id is a name, not a path"},
            {"url": "mailto:someone@example.com"},
            {"url": "https://news.example/ok", "tags": "not-a-list"},
            "not an object",
        ),
        url=FEED_URL,
    )
    assert [e.url for e in feed.entries] == [
        "https://news.example/by-id",
        "https://elsewhere.example/x",
    ]
    assert feed.entries[0].content == "Text only."
    assert feed.entries[1].published_at == 1705276800.0  # a date without a zone is UTC
    assert feed.skipped == 4


def test_json_feed_version_one_is_accepted() -> None:
    feed = parse_json_feed(
        json_feed({"url": "https://a.example/1"}, version="https://jsonfeed.org/version/1"),
        url=FEED_URL,
    )
    assert len(feed.entries) == 1


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "not_a_feed"),
        (b'{"version": "2.0", "items": []}', "not_a_feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "malformed"),
        (json_feed({"title": "no url"}), "malformed"),
    ],
)
def test_json_feed_errors(body: bytes, kind: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_json_feed(body, url=FEED_URL)
    assert caught.value.kind == kind


def test_an_empty_json_feed_is_fine() -> None:
    assert parse_json_feed(json_feed(), url=FEED_URL).entries == []


RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>
<title>News</title>
<item>
  <title>BTC &lt; $100k for now</title>
  <link>/articles/one</link>
  <description>&lt;p&gt;A &lt;b&gt;short&lt;/b&gt; teaser.&lt;/p&gt;</description>
  <content:encoded><![CDATA[<p>The full text.</p><script>track()</script>
    <p>Second.</p>]]></content:encoded>
  <pubDate>Mon, 15 Jan 2024 10:00:00 +0100</pubDate>
  <category>Bitcoin</category><category>Markets</category>
</item>
<item>
  <title>Permalink only in the guid</title>
  <guid isPermaLink="true">https://news.example/articles/two</guid>
</item>
<item><title>No link at all</title></item>
</channel></rss>"""


def test_rss_entries() -> None:
    feed = parse_feed(RSS, url="https://news.example/rss.xml", content_type="application/rss+xml")
    assert feed.kind == "rss"
    assert feed.warning is None
    first, second = feed.entries
    assert first.url == "https://news.example/articles/one"
    assert first.title == "BTC < $100k for now"  # plain text keeps its "<"
    assert first.summary == "A short teaser."
    assert first.content == "The full text.\n\nSecond."
    assert first.published_at == 1705309200.0  # 09:00 UTC
    assert first.tags == ("bitcoin", "markets")
    assert second.url == "https://news.example/articles/two"
    assert second.published_at is None
    assert feed.skipped == 1


def test_atom_entries() -> None:
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom news</title>
<entry><title>One</title><link rel="alternate" href="https://news.example/one"/>
<id>tag:news.example,2024:1</id><updated>2024-01-15T10:00:00Z</updated>
<summary>Sum.</summary><category term="DeFi"/></entry>
</feed>"""
    feed = parse_feed(atom, url="https://news.example/atom.xml")
    assert feed.kind == "atom"
    [entry] = feed.entries
    assert (entry.url, entry.summary, entry.published_at, entry.tags) == (
        "https://news.example/one",
        "Sum.",
        1705312800.0,
        ("defi",),
    )


def test_a_malformed_feed_with_usable_entries_is_recovered_with_a_warning() -> None:
    broken = b'<rss version="2.0"><channel><item><title>A & B</title><link>https://n.example/a</link></item></channel></rss'
    feed = parse_feed(broken, url="https://n.example/rss")
    assert [e.url for e in feed.entries] == ["https://n.example/a"]
    assert feed.warning is not None


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken<item><title>Half',
            "malformed",
        ),
        (b"<html><body><p>Not a feed</p></body></html>", "not_a_feed"),
    ],
)
def test_feeds_with_nothing_usable(body: bytes, kind: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(body, url="https://n.example/rss", content_type="text/html")
    assert caught.value.kind == kind


def test_json_is_detected_by_type_or_by_content() -> None:
    body = json_feed({"url": "https://a.example/1"})
    assert parse_feed(body, url=FEED_URL, content_type="application/feed+json").kind == "json"
    assert parse_feed(b"\n " + body, url=FEED_URL, content_type="text/plain").kind == "json"


def test_html_to_text() -> None:
    assert html_to_text("<p>One &amp; two</p><br/><div>Three</div>") == "One & two\n\nThree"
    assert html_to_text("<style>p{}</style>Plain") == "Plain"
    assert html_to_text("no markup") == "no markup"


def test_clean_tags_are_bounded() -> None:
    many = [f"tag {i}" for i in range(50)] + ["x" * 100]
    tags = clean_tags(many)
    assert len(tags) == 20
    assert all(len(tag) <= 64 for tag in tags)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:00:00+02:00", 1705305600.0),
        ("2024-01-15T10:00:00.5z", 1705312800.5),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_iso_date(text: str | None, expected: float | None) -> None:
    assert parse_iso_date(text) == expected
