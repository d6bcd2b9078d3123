"""``cryptoviz-scraper`` end to end: the real console script as a process, polling the fake news
site over loopback and producing to a real Kafka-protocol broker; what lands in ``rawarticle`` is
read back and checked field by field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from services.scraper.dedup import canonical_url
from services.scraper.fake_site import BTC_PATH, FakeArticle, FakeNewsSite, sources_toml
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import EmbeddedPostgres
from shared.envelope import RawArticle, decode
from tests.conftest import free_port

# Each test runs the daemon as a process, as an operator does; they are slow but few.
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SCRAPER = str(BIN / "cryptoviz-scraper")
RUN_TIMEOUT_S = 60.0
EX_CONFIG = 78

# What one pass over the fake site publishes, by path: the RSS stories (the BTC one listed twice
# counts once), pages that failed for good published with the feed's text (404, endless body,
# disallowed by robots.txt), the Atom and JSON stories. Not published: the 500 and slow pages
# (left for a later poll), the page without an article and without feed text, the BTC story's
# syndicated copy (one of the two BTC URLs is published, whichever was first).
PUBLISHED_PATHS = {
    "/articles/ethereum-exchange-hack",
    "/articles/solana-validator-release",
    "/articles/weekly-calendar",
    "/articles/conference-registration",
    "/status/404",
    "/huge/story",
    "/private/members-only",
    "/articles/committee-roundtable",
    "/articles/cardano-funding-vote",
    "/articles/zurich-cafe-bitcoin",
}
BTC_COPIES = {BTC_PATH, "/partner/bitcoin-record-high"}
ARTICLES_PER_PASS = len(PUBLISHED_PATHS) + 1


@pytest.fixture
async def site() -> AsyncIterator[FakeNewsSite]:
    async with FakeNewsSite(slow_s=5.0) as running:
        yield running


def scraper_env(
    site: FakeNewsSite,
    broker: EmbeddedBroker,
    data_dir: Path,
    *,
    poll_interval_s: float = 60.0,
    **env: str,
) -> dict[str, str]:
    sources = data_dir.parent / f"{data_dir.name}-sources.toml"
    sources.parent.mkdir(parents=True, exist_ok=True)
    sources.write_text(sources_toml(site.url, poll_interval_s=poll_interval_s))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    return {
        **clean,
        "CRYPTOVIZ_SCRAPER_SOURCES": str(sources),
        "CRYPTOVIZ_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CRYPTOVIZ_KAFKA_IDEMPOTENCE": "false",  # the embedded broker cannot
        "CRYPTOVIZ_SENTIMENT_MODEL": "lexicon",
        "CRYPTOVIZ_DATA_DIR": str(data_dir),
        "CRYPTOVIZ_HTTP_PORT": str(free_port()),
        "CRYPTOVIZ_LOG_FORMAT": "json",
        # Short bounds so the slow page costs a second, not twenty.
        "CRYPTOVIZ_SCRAPER_TIMEOUT_S": "1",
        "CRYPTOVIZ_SCRAPER_RETRIES": "0",
        "CRYPTOVIZ_SCRAPER_MAX_BODY_BYTES": "1048576",
        "CRYPTOVIZ_SCRAPER_PER_HOST_CONCURRENCY": "4",
        **env,
    }


@dataclass
class Pass:
    returncode: int
    lines: list[str]

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def event(self, name: str) -> dict[str, Any]:
        found = [entry for entry in self.logs() if entry.get("event") == name]
        assert found, f"no {name!r} log line"
        return found[-1]


async def run_once(env: dict[str, str], *args: str) -> Pass:
    """``cryptoviz-scraper --once`` as a child process; the fake site keeps serving meanwhile."""
    process = await asyncio.create_subprocess_exec(
        SCRAPER,
        "--once",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode(errors="replace").splitlines()
    print("\n".join(lines[-30:]))  # shown by pytest when the test fails
    assert process.returncode is not None
    return Pass(process.returncode, lines)


async def read_articles(broker: EmbeddedBroker) -> list[tuple[str, RawArticle]]:
    """Every rawarticle record from the beginning: (key, payload), decoding checked."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition("rawarticle", p)
            for p in sorted(consumer.partitions_for_topic("rawarticle") or [])
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[tuple[str, RawArticle]] = []
        idle_polls = 0
        while idle_polls < 3:
            batch = await consumer.getmany(timeout_ms=300)
            fetched = [r for rs in batch.values() for r in rs]
            idle_polls = 0 if fetched else idle_polls + 1
            for record in fetched:
                payload = decode("rawarticle", record.value, record.headers)
                assert isinstance(payload, RawArticle)
                records.append(((record.key or b"").decode(), payload))
        return records
    finally:
        await consumer.stop()


def by_path(site: FakeNewsSite, records: list[tuple[str, RawArticle]]) -> dict[str, RawArticle]:
    articles = {payload.id.removeprefix(site.url): payload for _, payload in records}
    assert len(articles) == len(records), "an article was published twice"
    return articles


def check_published_pass(site: FakeNewsSite, records: list[tuple[str, RawArticle]]) -> None:
    articles = by_path(site, records)
    btc = set(articles) & BTC_COPIES
    assert len(btc) == 1, f"the BTC story and its syndicated copy: {sorted(btc)}"
    assert set(articles) - BTC_COPIES == PUBLISHED_PATHS
    now = time.time()
    sources = {"Fake RSS", "Fake Atom", "Fake JSON"}
    for key, article in records:
        path = article.id.removeprefix(site.url)
        assert key == article.website
        assert article.website in sources
        assert article.id == canonical_url(article.url)
        assert article.url.startswith(site.url + path)
        assert article.title
        assert article.summary
        assert len(article.summary) <= 1001
        assert article.content.text
        assert now - 120 < article.scraped_at <= now
        assert all(tag == tag.lower().strip() for tag in article.tags)
        assert len(set(article.tags)) == len(article.tags)
        assert -1.0 <= article.sentiment.score <= 1.0
        if path not in ("/articles/weekly-calendar", "/articles/conference-registration"):
            assert article.published_at is not None
            assert now - 2 * 86_400 < article.published_at < article.scraped_at

    btc_story = articles[btc.pop()]
    assert btc_story.sentiment.label == "positive"
    assert btc_story.sentiment.score > 0.5
    assert btc_story.cryptocurrencies_mentioned == ["BTC"]
    assert {"bitcoin", "markets"} <= set(btc_story.tags)
    assert "Bitcoin soared to a record high" in btc_story.content.text

    eth = articles["/articles/ethereum-exchange-hack"]
    assert eth.website == "Fake RSS"
    assert eth.sentiment.label == "negative"
    assert eth.sentiment.score < -0.5
    assert eth.cryptocurrencies_mentioned == ["ETH"]
    assert eth.summary == "ETH plunged twenty percent in a panic selloff."  # the feed's own

    sol = articles["/articles/solana-validator-release"]
    assert sol.sentiment.label == "neutral"
    assert sol.cryptocurrencies_mentioned == ["SOL"]  # not fooled by "method" or "solution"

    assert articles["/articles/weekly-calendar"].published_at is None  # no date anywhere
    assert articles["/articles/weekly-calendar"].cryptocurrencies_mentioned == ["BTC", "ETH"]
    assert articles["/articles/weekly-calendar"].summary.startswith("Weekly calendar")
    future = articles["/articles/conference-registration"]
    assert future.published_at == future.scraped_at  # two days ahead: clamped
    assert articles["/articles/committee-roundtable"].cryptocurrencies_mentioned == []
    assert articles["/articles/committee-roundtable"].website == "Fake Atom"
    assert articles["/articles/cardano-funding-vote"].cryptocurrencies_mentioned == ["ADA"]

    cafe = articles["/articles/zurich-cafe-bitcoin"]
    assert cafe.website == "Fake JSON"
    assert "café in Zürich" in cafe.content.text
    assert "5 €" in cafe.content.text  # windows-1252 bytes behind a latin-1 header

    # Pages out of reach for good: the feed's text stands in.
    assert articles["/status/404"].content.text == "The page of this story no longer exists."
    assert articles["/huge/story"].content.text == "The page of this story never ends."
    assert articles["/private/members-only"].content.text == "An analysis for members only."


async def test_one_pass_publishes_each_article_once_and_a_restart_publishes_nothing(
    site: FakeNewsSite, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    env = scraper_env(site, private_broker, workdir / f"once-{free_port()}")
    first = await run_once(env)
    assert first.returncode == 0
    records = await read_articles(private_broker)
    check_published_pass(site, records)
    assert site.hits["/private/members-only"] == 0  # robots.txt disallows it

    summary = first.event("scrape pass finished")
    assert summary["published"] == ARTICLES_PER_PASS
    assert summary["deferred"] == 2  # the 500 and the slow page
    report = summary["sources"]
    assert report["Fake Broken"]["feed"] == "malformed"
    assert report["Fake Missing"]["feed"] == "4xx"
    assert "Fake Disabled" not in report
    assert report["Fake RSS"]["failures"] == {
        "page_4xx": 1,
        "page_too_large": 1,
        "page_robots": 1,
        "extraction_no_content": 1,
        "no_text": 1,
    }
    assert first.logs()[-1]["event"] == "daemon stopped"

    # A second pass is a restart: the seen file and the feed validators come from disk.
    not_modified = site.statuses[304]
    second = await run_once(env)
    assert second.returncode == 0
    assert second.event("scrape pass finished")["published"] == 0
    assert len(await read_articles(private_broker)) == ARTICLES_PER_PASS
    # Unchanged feeds cost a 304; the RSS feed is fetched in full, since two of its entries
    # are still waiting for their pages.
    assert site.statuses[304] >= not_modified + 2
    report = second.event("scrape pass finished")["sources"]
    assert (report["Fake Atom"]["feed"], report["Fake JSON"]["feed"]) == ("304", "304")
    assert report["Fake RSS"]["feed"] == "200"
    assert report["Fake RSS"]["published"] == 0


async def test_postgres_dedup_holds_without_the_data_dir(
    site: FakeNewsSite,
    private_broker: EmbeddedBroker,
    postgres: EmbeddedPostgres,
    workdir: Path,
) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS scraper_seen")
    finally:
        await conn.close()
    with_db = {"CRYPTOVIZ_SCRAPER_DEDUP": "postgres", "CRYPTOVIZ_DB_DSN": postgres.dsn}
    first = await run_once(scraper_env(site, private_broker, workdir / "pg-a", **with_db))
    assert first.returncode == 0
    assert first.event("scrape pass finished")["published"] == ARTICLES_PER_PASS
    # Another scraper, another (empty) data directory: only the table knows what was published.
    second = await run_once(scraper_env(site, private_broker, workdir / "pg-b", **with_db))
    assert second.returncode == 0
    assert second.event("scrape pass finished")["published"] == 0
    assert len(await read_articles(private_broker)) == ARTICLES_PER_PASS
    conn = await asyncpg.connect(postgres.dsn)
    try:
        rows = await conn.fetch("SELECT url_key, fingerprint, source FROM scraper_seen")
    finally:
        await conn.close()
    published = {row["url_key"] for row in rows if row["fingerprint"] is not None}
    assert {key.removeprefix(site.url) for key in published} >= {
        "/articles/ethereum-exchange-hack",
        "/articles/solana-validator-release",
    }
    # The syndicated copy, seen in the second pass at the latest, is remembered under its URL.
    assert {row["url_key"].removeprefix(site.url) for row in rows} >= BTC_COPIES


@dataclass
class RunningScraper:
    process: asyncio.subprocess.Process
    http_port: int
    output: list[str] = field(default_factory=list)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.http_port}/metrics") as response,
        ):
            text = await response.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def total(self, name: str, **labels: str) -> float:
        try:
            samples = await self.metrics()
        except aiohttp.ClientError:
            return 0.0
        return sum(
            value
            for (sample, sample_labels), value in samples.items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )

    async def wait_until(
        self, check: Callable[[], Any], what: str, timeout_s: float = 30.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.returncode is None, "the scraper exited early"
            if await check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        out = await asyncio.wait_for(self.process.stdout.read(), 30)
        self.output = out.decode(errors="replace").splitlines()
        return await asyncio.wait_for(self.process.wait(), 5)


@contextlib.asynccontextmanager
async def scraper_daemon(env: dict[str, str]) -> AsyncIterator[RunningScraper]:
    process = await asyncio.create_subprocess_exec(
        SCRAPER, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    daemon = RunningScraper(process, int(env["CRYPTOVIZ_HTTP_PORT"]))
    try:
        yield daemon
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        print("\n".join(daemon.output[-40:]))


async def test_the_daemon_polls_each_source_on_its_schedule_and_stops_on_sigterm(
    site: FakeNewsSite, private_broker: EmbeddedBroker, workdir: Path
) -> None:
    env = scraper_env(
        site,
        private_broker,
        workdir / f"daemon-{free_port()}",
        poll_interval_s=1.0,
        # Keep the 500 and slow pages waiting, so the count below is exact.
        CRYPTOVIZ_SCRAPER_PAGE_ATTEMPTS="1000",
        # A model that is nowhere on disk: the daemon says so and scores with the lexicon.
        CRYPTOVIZ_SENTIMENT_MODEL="cryptoviz-tests/absent-model",
    )
    published = "cryptoviz_scraper_articles_published_total"
    async with scraper_daemon(env) as daemon:

        async def all_published() -> bool:
            return await daemon.total(published) >= ARTICLES_PER_PASS

        await daemon.wait_until(all_published, "the first poll's articles")
        site.add_article(
            FakeArticle(
                "/articles/late-breaking",
                "Bitcoin miners report record revenue",
                (
                    "Bitcoin miners reported record revenue for the quarter, with strong demand "
                    "for block space and excellent efficiency gains across the largest pools.",
                    "Executives were upbeat and said the outlook remained bright for the year.",
                    "Several operators announced new sites powered by renewable energy.",
                ),
                summary="Record revenue for Bitcoin miners.",
                age_s=60,
            )
        )

        async def new_one_published() -> bool:
            return await daemon.total(published) >= ARTICLES_PER_PASS + 1

        await daemon.wait_until(new_one_published, "the article added while running")

        async def atom_not_modified() -> bool:
            return (
                await daemon.total(
                    "cryptoviz_scraper_fetches_total", source="Fake Atom", status="304"
                )
                > 0
            )

        await daemon.wait_until(atom_not_modified, "a 304 for the unchanged Atom feed")
        assert await daemon.total(published) == ARTICLES_PER_PASS + 1  # polls repeat, news not
        assert await daemon.total("cryptoviz_scraper_sentiment_backend", backend="lexicon") == 1
        assert await daemon.total("cryptoviz_scraper_sentiment_fallback") == 1
        assert await daemon.total("cryptoviz_scraper_duplicates_skipped_total", kind="url") > 0
        assert (
            await daemon.total(
                "cryptoviz_scraper_last_success_timestamp_seconds", source="Fake RSS"
            )
            > time.time() - 60
        )
        assert (
            await daemon.total(
                "cryptoviz_scraper_feed_errors_total", source="Fake Broken", kind="malformed"
            )
            >= 2
        )
        assert (
            await daemon.total(
                "cryptoviz_scraper_extraction_failures_total",
                source="Fake RSS",
                reason="no_content",
            )
            >= 1
        )
        assert await daemon.total("cryptoviz_scraper_sentiment_latency_seconds_count") >= 1
        assert await daemon.stop() == 0

    logs = [json.loads(line) for line in daemon.output if line.startswith("{")]
    assert logs[-1]["event"] == "daemon stopped"
    assert any(entry.get("event") == "source polled" for entry in logs)
    [fallback] = [
        e for e in logs if e.get("event") == "sentiment model unavailable, using the lexicon"
    ]
    assert fallback["level"] == "warning"
    assert fallback["model"] == "cryptoviz-tests/absent-model"
    records = await read_articles(private_broker)
    articles = by_path(site, records)
    assert "/articles/late-breaking" in articles
    assert articles["/articles/late-breaking"].sentiment.label == "positive"


async def test_a_bad_sources_file_exits_78_naming_the_file(workdir: Path) -> None:
    bad = workdir / "bad-sources.toml"
    bad.write_text('[[source]]\nname = "A"\nurl = "gopher://a.example/"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env = {
        **clean,
        "CRYPTOVIZ_SCRAPER_SOURCES": str(bad),
        "CRYPTOVIZ_HTTP_PORT": str(free_port()),
        "CRYPTOVIZ_LOG_FORMAT": "json",
        "CRYPTOVIZ_DATA_DIR": str(workdir / "bad-sources-data"),
    }
    result = await run_once(env)
    assert result.returncode == EX_CONFIG
    error = result.event("invalid configuration")["error"]
    assert str(bad) in error
    assert "source #1 ('A'): url 'gopher://a.example/' is not an http:// or https:// URL" in error


async def test_help_names_the_once_flag_and_the_scraper_settings() -> None:
    process = await asyncio.create_subprocess_exec(
        SCRAPER, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    text = out.decode()
    for word in ("--once", "CRYPTOVIZ_SCRAPER_SOURCES", "CRYPTOVIZ_SENTIMENT_MODEL"):
        assert word in text
