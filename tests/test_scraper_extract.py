"""Decoding pages and extracting articles, in the worker process and around it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from services.scraper.extract import (
    Extracted,
    ExtractionError,
    Extractor,
    decode_html,
    extract_document,
)
from services.scraper.fake_site import NO_ARTICLE_HTML, FakeArticle, FakeNewsSite

CAFE = "Un café à Zürich coûte 5 € — «très» bien."


@pytest.mark.parametrize(
    ("body", "declared", "encoding"),
    [
        # Header says latin-1, bytes are windows-1252: read as browsers do.
        (CAFE.encode("cp1252"), "ISO-8859-1", "cp1252"),
        (CAFE.encode("cp1252"), "windows-1252", "cp1252"),
        (CAFE.encode("utf-8"), "utf-8", "utf-8"),
        # No header charset: the page's own meta tag.
        (b'<meta charset="windows-1252">' + CAFE.encode("cp1252"), None, "cp1252"),
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-15">'
            + "Prix: 5 €".encode("iso-8859-15"),
            None,
            "iso8859-15",
        ),
        # A header that lies (says utf-8, is not): the next candidate, never an exception.
        (b'<meta charset="cp1252">' + CAFE.encode("cp1252"), "utf-8", "cp1252"),
        (b"\xef\xbb\xbf" + CAFE.encode("utf-8"), "latin-1", "utf-8-sig"),  # a BOM wins
    ],
)
def test_decoding(body: bytes, declared: str | None, encoding: str) -> None:
    text, used = decode_html(body, declared)
    assert used == encoding
    assert CAFE in text or "Prix: 5 €" in text


def test_decoding_never_fails() -> None:
    garbage = bytes(range(256)) * 4
    text, _ = decode_html(garbage, "no-such-charset")
    assert isinstance(text, str)
    # cp1252 leaves five bytes undefined: latin-1 takes them rather than failing.
    text, used = decode_html(b"caf\xe9 \x81", "ISO-8859-1")
    assert (text, used) == ("caf\xe9 \x81", "latin-1")


def page(article: FakeArticle) -> str:
    # The fake site's own template, so the test extracts what the daemon tests fetch.
    return FakeNewsSite().render_page(article)


STORY = FakeArticle(
    "/articles/story",
    "Bitcoin miners move to new regions",
    (
        "Bitcoin miners are moving their machines to regions with cheaper power, according to "
        "a survey published on Monday by an industry group that tracks the sector.",
        "The survey covers operators in twelve countries. It lists the sites that opened this "
        "year and the share of the network each of them represents.",
        "The group plans to publish the next edition of the survey in six months.",
    ),
    summary="Miners move to cheaper power.",
    tags=("Mining", "Energy, Power"),
    age_s=3600,
)


@pytest.mark.parametrize("minutes_after_midnight", [10, 70, 600])
def test_a_date_of_today_keeps_its_time(minutes_after_midnight: int) -> None:
    # htmldate cut times of "today" to midnight when the bound was today's date.
    site = FakeNewsSite()
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    published = midnight.timestamp() + minutes_after_midnight * 60
    site.started_at = published + (STORY.age_s or 0)
    extracted = extract_document(site.render_page(STORY), "https://news.example/articles/story")
    assert extracted is not None
    assert extracted.date == published


def test_an_article_page_gives_text_title_date_and_tags() -> None:
    extracted = extract_document(page(STORY), "https://news.example/articles/story")
    assert extracted is not None
    assert extracted.title == STORY.title
    assert "industry group that tracks the sector" in extracted.text
    assert "All rights reserved" not in extracted.text  # the footer is not the article
    assert "Markets" not in extracted.text  # nor the navigation
    assert extracted.date is not None
    assert abs(extracted.date - (time.time() - 3600)) < 120
    assert set(extracted.tags) == {"Mining", "Energy", "Power"}
    assert extracted.description == "Miners move to cheaper power."


def test_a_page_without_an_article_gives_none() -> None:
    assert extract_document(NO_ARTICLE_HTML, "https://news.example/markets") is None
    assert extract_document("", "https://news.example/empty") is None
    assert extract_document("<html><body><p>Hi.</p></body></html>", "https://n.example/") is None


Worker = tuple[Extractor, list[str]]


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """An extractor recycled every two pages, and the reasons of its restarts."""
    restarts: list[str] = []
    extractor = Extractor(timeout_s=30.0, recycle_after=2, on_restart=restarts.append)
    await extractor.start()
    yield extractor, restarts
    await extractor.close()


async def test_the_worker_extracts_and_is_recycled(worker: Worker) -> None:
    extractor, restarts = worker
    html = page(STORY)
    for _ in range(3):
        extracted = await extractor.extract(html, "https://news.example/articles/story")
        assert extracted is not None
        assert extracted.title == STORY.title
    assert restarts == ["recycled"]


def stuck(html: str, url: str) -> Extracted | None:
    """Runs in the worker in place of trafilatura: an extraction that never ends."""
    time.sleep(3600)
    return None


async def test_a_stuck_extraction_kills_the_worker_and_the_next_one_works(
    worker: Worker,
) -> None:
    extractor, restarts = worker
    extractor.timeout_s, extractor.target = 0.5, stuck
    started = time.monotonic()
    with pytest.raises(ExtractionError) as caught:
        await extractor.extract(page(STORY), "https://news.example/articles/story")
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 5  # killed, not waited for
    assert restarts == ["timeout"]
    extractor.timeout_s, extractor.target = 30.0, extract_document
    assert await extractor.extract(page(STORY), "https://news.example/a") is not None


async def test_a_closed_extractor_refuses_work() -> None:
    worker = Extractor(timeout_s=5.0, recycle_after=10)
    await worker.close()
    with pytest.raises(ExtractionError):
        await worker.extract("<html></html>", "https://n.example/")
