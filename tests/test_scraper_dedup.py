"""Deduplication keys (canonical URL, content fingerprint) and the stores that remember them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncpg
import pytest

from services.scraper.dedup import (
    FileSeenStore,
    PostgresSeenStore,
    canonical_url,
    content_fingerprint,
)
from services.scraper.fake_site import BTC_PARAGRAPHS, ETH_PARAGRAPHS
from shared.embedded.postgres import EmbeddedPostgres

DAY = 86_400.0


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        (
            "HTTPS://WWW.CoinDesk.com/Markets/2024/Story/",
            "https://www.coindesk.com/Markets/2024/Story",
        ),
        ("https://x.io/a?utm_source=rss&utm_medium=feed&id=7", "https://x.io/a?id=7"),
        ("https://x.io/a?fbclid=abc&gclid=def&ref=home", "https://x.io/a"),
        ("https://x.io/a?UTM_Campaign=x&page=2", "https://x.io/a?page=2"),
        ("https://x.io/a#comments", "https://x.io/a"),
        ("https://x.io:443/a", "https://x.io/a"),
        ("http://x.io:80/a", "http://x.io/a"),
        ("http://x.io:8080/a", "http://x.io:8080/a"),
        ("https://user:secret@x.io/a", "https://x.io/a"),
        ("https://x.io/", "https://x.io"),
        ("  https://x.io/a/b//  ", "https://x.io/a/b"),
        # Order of the remaining parameters is kept: they may name the article.
        ("https://x.io/p?b=2&a=1", "https://x.io/p?b=2&a=1"),
        ("https://[::1]:8443/a", "https://[::1]:8443/a"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


def test_listings_of_one_article_share_a_key() -> None:
    listings = [
        "https://news.example/btc-record",
        "https://news.example/btc-record/",
        "https://NEWS.example/btc-record/?utm_source=twitter#top",
        "https://news.example/btc-record?fbclid=IwAR0",
    ]
    assert len({canonical_url(u) for u in listings}) == 1
    assert canonical_url("https://news.example/BTC-Record") != canonical_url(listings[0])


def test_the_published_link_keeps_its_trailing_slash() -> None:
    assert (
        canonical_url("https://x.io/a/?utm_source=rss#c", keep_trailing_slash=True)
        == "https://x.io/a/"
    )


BTC_TEXT = "\n\n".join(BTC_PARAGRAPHS)


def test_a_copy_typeset_differently_has_the_same_fingerprint() -> None:
    copy = (
        BTC_TEXT.upper()
        .replace(" ", "\u00a0 ")
        .replace(",", " ,")
        .replace("'", "\u2019")
        .replace("\n\n", "\n")
    )
    assert content_fingerprint(BTC_TEXT) is not None
    assert content_fingerprint(copy) == content_fingerprint(BTC_TEXT)


def test_a_retitled_copy_with_a_different_ending_has_the_same_fingerprint() -> None:
    original = "Bitcoin soars to a record\n" + BTC_TEXT
    partner = (
        "Partner desk: BTC at a record\n"
        + BTC_TEXT
        + "\nThis story first appeared on another site. Follow us for more."
    )
    assert content_fingerprint(original, "Bitcoin soars to a record") == content_fingerprint(
        partner, "Partner desk: BTC at a record"
    )


def test_different_articles_and_short_texts() -> None:
    eth = "\n".join(ETH_PARAGRAPHS)
    assert content_fingerprint(eth) != content_fingerprint(BTC_TEXT)
    assert content_fingerprint("Subscribe to our newsletter for the latest news.") is None
    assert content_fingerprint("") is None


async def test_the_file_store_remembers_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "seen.jsonl"
    store = FileSeenStore(path, retention_s=90 * DAY)
    await store.open()
    assert store.ready
    assert not await store.has_url("https://x.io/a")
    await store.add("https://x.io/a", "f" * 32, "Source A")
    await store.add("https://x.io/b", None, "Source B")
    await store.close()
    await store.close()  # twice is fine

    again = FileSeenStore(path, retention_s=90 * DAY)
    await again.open()
    assert await again.has_url("https://x.io/a")
    assert await again.has_url("https://x.io/b")
    assert await again.has_content("f" * 32)
    assert not await again.has_content("0" * 32)
    await again.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(row["u"], row["s"]) for row in lines] == [
        ("https://x.io/a", "Source A"),
        ("https://x.io/b", "Source B"),
    ]


async def test_the_file_store_skips_a_torn_line_and_forgets_expired_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "seen.jsonl"
    now = time.time()
    path.write_text(
        json.dumps({"u": "https://x.io/old", "f": "a" * 32, "t": now - 100 * DAY})
        + "\n"
        + json.dumps({"u": "https://x.io/new", "f": "b" * 32, "t": now})
        + "\n"
        + '{"u": "https://x.io/torn", "f": nu'  # a crash mid-append
    )
    store = FileSeenStore(path, retention_s=90 * DAY)
    await store.open()
    assert await store.has_url("https://x.io/new")
    assert not await store.has_url("https://x.io/old")
    assert not await store.has_content("a" * 32)
    assert not await store.has_url("https://x.io/torn")
    await store.add("https://x.io/after", None, "S")
    await store.close()
    # Compacted at open: the expired and torn lines are gone, appends follow on whole lines.
    urls = [json.loads(line)["u"] for line in path.read_text().splitlines()]
    assert urls == ["https://x.io/new", "https://x.io/after"]


@pytest.mark.slow
async def test_the_postgres_store_creates_its_table_and_remembers(
    postgres: EmbeddedPostgres,
) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS scraper_seen")
    finally:
        await conn.close()
    first = PostgresSeenStore(postgres.dsn, "redacted", retention_s=90 * DAY)
    second = PostgresSeenStore(postgres.dsn, "redacted", retention_s=90 * DAY)
    await first.open()
    await second.open()  # a second scraper on the same database: the schema step is idempotent
    try:
        await first.add("https://x.io/a", "c" * 32, "Source A")
        await first.add("https://x.io/a", "c" * 32, "Source A")  # a redelivery changes nothing
        assert await second.has_url("https://x.io/a")
        assert await second.has_content("c" * 32)
        assert not await second.has_url("https://x.io/b")
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.execute(
                "INSERT INTO scraper_seen (url_key, source, seen_at) "
                "VALUES ('https://x.io/old', 'S', now() - interval '100 days')"
            )
            assert await first.prune() == 1
            assert await conn.fetchval("SELECT count(*) FROM scraper_seen") == 1
        finally:
            await conn.close()
    finally:
        await first.close()
        await second.close()


async def test_an_unreachable_postgres_is_a_connection_error_without_the_password() -> None:
    store = PostgresSeenStore(
        "postgresql://u:hunter2@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db", DAY
    )
    with pytest.raises(ConnectionError) as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)
    assert not store.ready
