"""The fetcher against the fake news site over loopback: conditional GET, size cap, timeouts,
retries, redirects, robots.txt and per-host limits."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.scraper.fake_site import BTC_PATH, FakeArticle, FakeNewsSite
from services.scraper.fetch import Fetcher
from services.scraper.settings import USER_AGENT, ScraperSettings
from tests.conftest import free_port

MakeFetcher = Callable[..., Fetcher]


@pytest.fixture
async def site() -> AsyncIterator[FakeNewsSite]:
    async with FakeNewsSite(slow_s=5.0) as running:
        yield running


@pytest.fixture
async def make_fetcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[MakeFetcher]:
    for name in list(os.environ):
        if name.startswith("CRYPTOVIZ_"):
            monkeypatch.delenv(name)
    fetchers: list[Fetcher] = []

    def make(**overrides: Any) -> Fetcher:
        options: dict[str, Any] = {
            "data_dir": tmp_path,
            "scraper_timeout_s": 1.0,
            "scraper_retries": 0,
            "scraper_retry_max_s": 0.05,
            **overrides,
        }
        fetcher = Fetcher(ScraperSettings(**options))
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        await fetcher.close()


async def started(fetcher: Fetcher) -> Fetcher:
    await fetcher.start()
    return fetcher


async def test_an_unchanged_feed_answers_304_the_second_time(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher())
    first = await fetcher.fetch(site.feed_url("atom"), feed=True)
    assert (first.status, first.http_status) == ("200", 200)
    assert first.body.startswith(b"<?xml")
    assert first.etag is not None
    assert site.feed_url("atom") in fetcher.validators
    second = await fetcher.fetch(site.feed_url("atom"), feed=True)
    assert (second.status, second.body) == ("304", b"")
    assert site.statuses[304] == 1
    # Pages are never fetched conditionally: the scraper wants their body every time.
    for _ in range(2):
        assert (await fetcher.fetch(site.url + BTC_PATH)).status == "200"


async def test_a_changed_feed_answers_200_again(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher())
    assert (await fetcher.fetch(site.feed_url("rss"), feed=True)).ok
    site.add_article(FakeArticle("/articles/new", "New", ("Text.",)))
    again = await fetcher.fetch(site.feed_url("rss"), feed=True)
    assert again.ok
    assert b"/articles/new" in again.body


async def test_an_endless_body_stops_at_the_cap(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher(scraper_max_body_bytes=256 * 1024))
    started_at = time.monotonic()
    result = await fetcher.fetch(site.url + "/huge/story")
    assert result.status == "too_large"
    assert result.body == b""
    assert time.monotonic() - started_at < 5
    # A declared Content-Length above the cap is refused before reading.
    small = await started(make_fetcher(scraper_max_body_bytes=1024))
    assert (await small.fetch(site.url + BTC_PATH)).status == "too_large"
    # The connection was dropped, not reused with half a body in it: the next fetch is clean.
    assert (await fetcher.fetch(site.url + BTC_PATH)).status == "200"


async def test_a_slow_page_times_out_and_is_retried(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher(scraper_timeout_s=0.3, scraper_retries=1))
    result = await fetcher.fetch(site.url + "/slow/story")
    assert (result.status, result.attempts) == ("timeout", 2)
    assert site.hits["/slow/story"] == 2


async def test_server_errors_are_retried_and_client_errors_are_not(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher(scraper_retries=2))
    failing = await fetcher.fetch(site.url + "/status/500")
    assert (failing.status, failing.http_status, failing.attempts) == ("5xx", 500, 3)
    assert failing.transient
    gone = await fetcher.fetch(site.url + "/status/404")
    assert (gone.status, gone.attempts) == ("4xx", 1)
    assert not gone.transient
    assert (site.hits["/status/500"], site.hits["/status/404"]) == (3, 1)


async def test_redirects_are_followed_up_to_the_limit(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher(scraper_max_redirects=3, scraper_retries=2))
    landed = await fetcher.fetch(site.url + "/redirect/3")
    assert landed.ok
    assert landed.final_url == site.url + BTC_PATH
    assert landed.url == site.url + "/redirect/3"
    looping = await fetcher.fetch(site.url + "/redirect/loop")
    assert (looping.status, looping.error) == ("error", "too_many_redirects")
    assert site.hits["/redirect/loop"] == 4  # the first request and three hops, never retried
    too_far = await fetcher.fetch(site.url + "/redirect/5")
    assert too_far.error == "too_many_redirects"


async def test_robots_txt_is_honoured_and_cached(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher())
    denied = await fetcher.fetch(site.url + "/private/members-only")
    assert denied.status == "robots"
    assert site.hits["/private/members-only"] == 0
    assert (await fetcher.fetch(site.url + BTC_PATH)).ok
    assert site.hits["/robots.txt"] == 1
    # A group for another agent does not apply to us.
    assert await fetcher.allowed(site.url + "/articles/anything")


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (503, False)])
async def test_robots_txt_errors_follow_rfc_9309(
    status: int, allowed: bool, make_fetcher: MakeFetcher
) -> None:
    async with FakeNewsSite(robots_status=status) as site:
        fetcher = await started(make_fetcher())
        result = await fetcher.fetch(site.url + BTC_PATH)
        assert result.ok is allowed
        assert (result.status == "robots") is not allowed


async def test_an_unreachable_robots_txt_allows(make_fetcher: MakeFetcher) -> None:
    fetcher = await started(make_fetcher())
    nothing_there = f"http://127.0.0.1:{free_port()}"
    assert await fetcher.allowed(nothing_there + "/page")
    result = await fetcher.fetch(nothing_there + "/page")
    assert result.status == "error"
    assert result.transient


async def test_requests_to_one_host_are_limited(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    site.slow_s = 0.3
    fetcher = await started(make_fetcher(scraper_per_host_concurrency=2))
    await fetcher.fetch(site.url + BTC_PATH)  # robots.txt read once, before the burst
    started_at = time.monotonic()
    results = await asyncio.gather(*(fetcher.fetch(site.url + "/slow/story") for _ in range(4)))
    assert [r.status for r in results] == ["200"] * 4
    assert site.max_in_flight == 2
    # Two rounds of 0.3 s; the timeout (1 s) only counts once a slot is held.
    assert 0.55 < time.monotonic() - started_at < 2.0


async def test_the_user_agent_names_the_scraper(
    site: FakeNewsSite, make_fetcher: MakeFetcher
) -> None:
    fetcher = await started(make_fetcher())
    await fetcher.fetch(site.url + BTC_PATH)
    assert site.user_agents == {USER_AGENT}
    assert USER_AGENT.startswith("cryptoviz-scraper/")
    assert fetcher.robots_agent == "cryptoviz-scraper"
