"""The scraper's article path: articles/s through extract, sentiment and mentions on 2 cores.

The real components, as :class:`ScraperService` uses them, for each sentiment backend:

- extraction: :func:`decode_html` in the event loop, then trafilatura in the :class:`Extractor`
  worker process (spawned, one extraction at a time, the daemon's timeout; not recycled within
  a run: the worker's start-up time, which each recycling costs again, is shown apart);
- sentiment: :class:`LexiconSentiment`, and :class:`TransformersSentiment` on a model with FinBERT's
  shape (``BertConfig()`` defaults, BERT-base: 12 layers, hidden size 768, 512 positions; labels
  positive, negative, neutral) but random weights, saved to a temporary directory with a WordPiece
  tokenizer trained on the corpus: its labels mean nothing, its compute is FinBERT's, since every
  article fills the 512 tokens either way;
- mentions: :class:`MentionFinder` on the title and text, inline in the event loop.

The pages are built in memory: the fake news site's stories (``services/scraper/fake_site.py``) and
the benchmark's press paragraphs, lengthened with market sentences to 5 to 8 KB of text each, in a
news-site template (scripts, styles, cookie banner, navigation, price ticker, byline, figure, tags,
sidebar, related stories, footer). Fetching, deduplication and Kafka are left out.

Stages: each timed alone, one article after the other: extraction, sentiment in batches of the
daemon's size, mentions. Pipeline: the stages run concurrently as the daemon runs them: a few
sources poll at once, each poll taking a batch of pages; a poll extracts its pages at most
``scraper_article_concurrency`` at a time (the worker serialises them), finds mentions, then scores
its articles in a thread, one batch at a time daemon-wide, while the other polls keep the worker
busy. The process (and with it the worker it spawns) is pinned to 2 CPUs and torch to 2 threads.

Peak RSS is Linux's ``VmHWM``: the main process's is reset (``/proc/self/clear_refs``) before each
backend's load, so it is that backend's, not the high-water mark of the whole benchmark process
that ``ru_maxrss`` would give; the worker's is read before it is stopped. Other processes on the
same cores skew every figure: the share of the cores' time they took is shown with each run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import importlib
import os
import random
import re
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench import _samples, _table
from bench.kraken import _quiet_logs
from services.scraper import fake_site
from services.scraper.extract import Extracted, Extractor, decode_html
from services.scraper.mentions import MentionFinder
from services.scraper.sentiment import (
    TRANSFORMERS_MAX_CHARS,
    LexiconSentiment,
    SentimentBackend,
    SentimentResult,
    TransformersSentiment,
    article_text,
    clip,
)
from services.scraper.settings import ScraperSettings
from shared.runtime import tune_gc

CORES: Final = 2
SOURCES: Final = 4  # polls running at once
SITE: Final = "https://news.example.invalid"
FINBERT_LABELS: Final = ("positive", "negative", "neutral")  # ProsusAI/finbert's id2label order
WARMUP_PAGES: Final = 4
MIB: Final = 1024 * 1024


def _default(name: str) -> Any:
    return ScraperSettings.model_fields[name].default


ARTICLE_SLOTS: Final[int] = _default("scraper_article_concurrency")
BATCH_SIZE: Final[int] = _default("sentiment_batch_size")
EXTRACT_TIMEOUT_S: Final[float] = _default("scraper_extract_timeout_s")
EXTRACT_RECYCLE: Final[int] = _default("scraper_extract_recycle")
# Not within a run: a respawn in a timed loop would stall it for the worker's start-up time (shown
# apart) and move its CPU and memory figures to another process.
NO_RECYCLING: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Plan:
    pages: int  # the lexicon's run
    model_pages: int  # the transformers run: BERT-base takes about a core-second an article
    repeats: int  # best of n for the lexicon's sentiment stage and pipeline; the model's: 1


FULL = Plan(pages=200, model_pages=32, repeats=3)
QUICK = Plan(pages=50, model_pages=8, repeats=1)


# --- the corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    body: bytes
    text: str  # the article's own paragraphs, as written into the page


@dataclass(frozen=True, slots=True)
class _Story:
    title: str
    summary: str
    tags: tuple[str, ...]
    paragraphs: tuple[str, ...]


# (name, ticker, price) as market reports write them; some tickers need context to count.
_ASSETS: Final = (
    ("Bitcoin", "BTC", 97_123.4),
    ("Ether", "ETH", 3_350.12),
    ("Solana", "SOL", 243.17),
    ("XRP", "XRP", 1.45),
    ("Cardano", "ADA", 1.05),
    ("Chainlink", "LINK", 17.2),
    ("Polkadot", "DOT", 8.9),
    ("Dogecoin", "DOGE", 0.41),
    ("Avalanche", "AVAX", 44.0),
    ("Litecoin", "LTC", 98.3),
)
_TEMPLATES: Final = (
    "{name} traded at ${price:,.2f} at {hour:02d}:00 UTC, {move} {pct:.1f}% on the day.",
    "Open interest in {ticker} futures rose to ${size:.1f} billion, according to exchange data.",
    "{name} ({ticker}) was {move} {pct:.1f}% over the week, while {other} was little changed.",
    "Funding rates on {ticker} perpetual swaps stayed near {bps:.0f} basis points, a sign that "
    "leveraged traders were {mood}.",
    "Spot volumes in {name} fell {pct:.0f}% from the previous session as traders waited for "
    "the central bank's decision on {weekday}.",
    "Analysts at one trading desk said {name} could test ${level:,.0f} if the {mood2} momentum "
    "holds into the monthly close.",
    "Data from on-chain analytics firms showed {size:.1f} thousand {ticker} moving off "
    "exchanges, the largest outflow since {month}.",
)
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_MONTHS: Final = ("January", "March", "May", "August", "October", "December")
_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+(?=[A-Z\u201c])")
_SECTIONS: Final = (
    "Markets",
    "Bitcoin",
    "Ethereum",
    "Altcoins",
    "DeFi",
    "Policy",
    "Business",
    "Tech",
    "Opinion",
    "Research",
    "Data",
    "Events",
    "Podcasts",
    "Videos",
    "Newsletters",
)


def _stories() -> list[_Story]:
    """The fake site's stories with their titles, then its other paragraphs and the bench's."""
    stories = [
        _Story(article.title, article.summary, article.tags, article.paragraphs)
        for article in fake_site.default_articles()
    ]
    stories += [
        _Story(
            "Committee schedules a roundtable on crypto market rules",
            "The session will be streamed and the transcript published.",
            ("Regulation",),
            fake_site.REGULATION_PARAGRAPHS,
        ),
        _Story(
            "Cardano holders to vote on a funding proposal",
            "Voting opens on Monday and closes after six epochs.",
            ("Cardano", "Governance"),
            fake_site.ADA_PARAGRAPHS,
        ),
        _Story(
            "A Zürich café now takes Bitcoin for coffee",
            "A cappuccino costs 5 € or its equivalent in BTC.",
            ("Bitcoin", "Payments"),
            fake_site.CAFE_PARAGRAPHS,
        ),
        _Story(
            "Bitcoin tops $97,000 as ETF inflows return and shorts are squeezed",
            "Bitcoin rose above $97,000 as spot ETF inflows resumed.",
            ("Markets", "Bitcoin", "ETF"),
            _samples._PARAGRAPHS,
        ),
    ]
    return stories


class _Writer:
    """Seeded prose: the stories' own sentences mixed with templated market sentences."""

    def __init__(self, stories: Sequence[_Story], seed: int) -> None:
        self._rng = random.Random(seed)  # a corpus, not a secret
        self._sentences = [
            sentence
            for story in stories
            for paragraph in story.paragraphs
            for sentence in _SENTENCE.split(paragraph)
        ]

    def _market_sentence(self) -> str:
        rng = self._rng
        name, ticker, price = rng.choice(_ASSETS)
        return rng.choice(_TEMPLATES).format(
            name=name,
            ticker=ticker,
            price=price * rng.uniform(0.97, 1.03),
            hour=rng.randrange(24),
            move=rng.choice(("up", "down")),
            pct=rng.uniform(0.2, 14.0),
            size=rng.uniform(1.0, 40.0),
            other=rng.choice(_ASSETS)[0],
            bps=rng.uniform(-5, 30),
            mood=rng.choice(("cautious", "paying up for long exposure", "hedging")),
            mood2=rng.choice(("bullish", "bearish", "recent")),
            weekday=rng.choice(_WEEKDAYS),
            level=price * rng.uniform(0.8, 1.25),
            month=rng.choice(_MONTHS),
        )

    def paragraph(self) -> str:
        rng = self._rng
        return " ".join(
            self._market_sentence() if rng.random() < 0.4 else rng.choice(self._sentences)
            for _ in range(rng.randint(3, 5))
        )

    def article(self, story: _Story) -> list[str]:
        """The story's paragraphs, then more until the text is 5 to 8 KB."""
        target = self._rng.randint(5_000, 8_000)
        paragraphs = list(story.paragraphs)
        while sum(len(p) + 1 for p in paragraphs) < target:
            paragraphs.append(self.paragraph())
        return paragraphs

    def choice(self, items: Sequence[Any]) -> Any:
        return self._rng.choice(items)

    def randint(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)


_STYLE: Final = (
    "<style>"
    + "".join(
        f".c{i}{{margin:0 {i}px;padding:{i % 7}px;font:14px/1.5 Georgia,serif;color:#2{i % 10}2}}"
        for i in range(40)
    )
    + "</style>"
)
_TRACKER: Final = (
    "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}"
    "gtag('js',new Date());gtag('config','G-BENCH0000');"
    + "".join(f"window.slot{i}={{id:'ad-{i}',sizes:[[300,250],[728,90]]}};" for i in range(12))
    + "</script>"
)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def _page(number: int, story: _Story, writer: _Writer, headlines: Sequence[str]) -> Page:
    """One article page in a news-site template: 5 to 8 KB of text in 10 to 15 KB of markup."""
    esc = html.escape
    paragraphs = writer.article(story)
    url = f"{SITE}/markets/2024/11/{1 + number % 28:02d}/{_slug(story.title)}-{number}"
    published = datetime.fromtimestamp(_samples.NOW - 3_600 * (number % 48), UTC).isoformat()
    json_ld = (
        '{"@context":"https://schema.org","@type":"NewsArticle",'
        f'"headline":"{esc(story.title)}","datePublished":"{published}",'
        '"author":{"@type":"Person","name":"Jane Doe"},'
        '"publisher":{"@type":"Organization","name":"Example Crypto News"}}'
    )
    nav = "".join(f'<li><a href="/{s.lower()}">{s}</a></li>' for s in _SECTIONS)
    tape = "".join(
        f'<li class="tick"><span>{ticker}</span><span>${price:,.2f}</span>'
        f'<span class="chg">{writer.randint(-500, 500) / 100:+.2f}%</span></li>'
        for _, ticker, price in _ASSETS
    )
    body: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        body.append(f"<p>{esc(paragraph)}</p>")
        if index == 3:
            related = writer.choice(headlines)
            body.append(
                '<aside class="inline-related"><strong>Read more:</strong> '
                f'<a href="/news/{_slug(related)}">{esc(related)}</a></aside>'
            )
        if index == 6:
            body.append('<div class="ad-slot" id="ad-mid"><!-- ad --></div>')
    most_read = "".join(
        f'<li><a href="/news/{_slug(h)}-{i}">{esc(h)}</a><span>{i + 2} min read</span></li>'
        for i, h in enumerate(writer.choice(headlines) for _ in range(8))
    )
    cards = "".join(
        f'<div class="card"><a href="/news/{_slug(h)}"><img src="/img/{i}.jpg" alt="">'
        f"<h3>{esc(h)}</h3></a><p>Markets · {i + 1} h ago</p></div>"
        for i, h in enumerate(writer.choice(headlines) for _ in range(4))
    )
    footer = "".join(
        f'<div class="col"><h4>{s}</h4><ul>'
        + "".join(f'<li><a href="/{s.lower()}/{k}">{s} {k}</a></li>' for k in range(5))
        + "</ul></div>"
        for s in _SECTIONS[:5]
    )
    tags = "".join(f'<li><a href="/tag/{t.lower()}">{esc(t)}</a></li>' for t in story.tags)
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(story.title)} | Example Crypto News</title>"
        f'<meta name="description" content="{esc(story.summary)}">'
        f'<meta property="og:title" content="{esc(story.title)}">'
        '<meta property="og:type" content="article">'
        f'<meta property="article:published_time" content="{published}">'
        f'<meta name="keywords" content="{esc(", ".join(story.tags))}">'
        f'<link rel="canonical" href="{url}"><link rel="stylesheet" href="/static/site.css">'
        f'{_STYLE}<script type="application/ld+json">{json_ld}</script>{_TRACKER}</head>\n'
        '<body><div id="cookie-banner" class="banner">We use cookies to improve your experience. '
        '<button>Accept</button> <a href="/privacy">Privacy policy</a></div>\n'
        '<header class="site-header"><a class="logo" href="/">Example Crypto News</a>'
        f'<nav class="primary"><ul>{nav}</ul></nav>'
        '<form class="search" action="/search"><input name="q" placeholder="Search"></form>'
        f'</header>\n<div class="price-tape"><ul>{tape}</ul></div>\n'
        f'<div class="layout"><main><nav class="breadcrumb"><a href="/">Home</a> &rsaquo; '
        f'<a href="/markets">Markets</a></nav>\n<article class="story">'
        f"<h1>{esc(story.title)}</h1>"
        '<div class="byline">By <a href="/author/jane-doe">Jane Doe</a> · '
        f'<time datetime="{published}">{published[:10]}</time></div>'
        '<figure><img src="/img/lead.jpg" alt="A chart of prices">'
        "<figcaption>Prices over the past week (Example Crypto News)</figcaption></figure>\n"
        + "\n".join(body)
        + f'\n<ul class="tags">{tags}</ul><div class="share"><a href="#">Share</a> '
        '<a href="#">Post</a> <a href="#">Email</a></div></article>\n'
        f'<section class="related"><h2>Related stories</h2>{cards}</section></main>\n'
        f'<aside class="sidebar"><h2>Most read</h2><ol>{most_read}</ol>'
        '<div class="newsletter"><h3>The daily brief</h3><p>The stories that move markets, '
        'every morning.</p><form><input type="email" placeholder="Email"><button>Sign up'
        '</button></form></div><div class="ad-slot" id="ad-side"><!-- ad --></div></aside>'
        f'</div>\n<footer class="site-footer">{footer}<p>© 2024 Example Crypto News. '
        "All rights reserved.</p></footer></body></html>\n"
    )
    return Page(url, document.encode(), "\n".join(paragraphs))


def corpus(count: int, *, seed: int = 7) -> list[Page]:
    """``count`` distinct article pages; the same pages for the same seed."""
    stories = _stories()
    writer = _Writer(stories, seed)
    headlines = [story.title for story in stories] + [
        f"{name} {move} as traders eye {other}"
        for name, _, _ in _ASSETS
        for move, other in (("slips", "the Fed"), ("climbs", "ETF flows"))
    ]
    return [_page(n, stories[n % len(stories)], writer, headlines) for n in range(count)]


# --- a model with FinBERT's shape -----------------------------------------------------------------


def _finbert_shaped(directory: Path, texts: Sequence[str]) -> str:
    """Save a BERT-base classifier with random weights and a tokenizer trained on ``texts``."""
    import torch  # noqa: PLC0415 - the ml extra, only for this backend
    from tokenizers import (  # noqa: PLC0415
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    transformers: Any = importlib.import_module("transformers")  # untyped in places
    transformers.utils.logging.disable_progress_bar()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] is id 0, BERT's pad id
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=30_522, special_tokens=specials, show_progress=False
    )
    wordpiece.train_from_iterator(texts, trainer)
    cls_id, sep_id = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    ).save_pretrained(directory)
    config = transformers.BertConfig(
        num_labels=len(FINBERT_LABELS),
        id2label=dict(enumerate(FINBERT_LABELS)),
        label2id={label: i for i, label in enumerate(FINBERT_LABELS)},
    )
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    gc.collect()
    return f"vocabulary {wordpiece.get_vocab_size():,} WordPiece tokens trained on the corpus"


# --- processes, cores and memory ------------------------------------------------------------------


@contextlib.contextmanager
def _on_cores(cores: int) -> Iterator[int]:
    """Pin this process (and the worker it spawns) to ``cores`` CPUs; yields how many it got."""
    if not hasattr(os, "sched_getaffinity"):
        yield os.cpu_count() or 1
        return
    saved = os.sched_getaffinity(0)
    chosen = set(sorted(saved)[:cores])
    os.sched_setaffinity(0, chosen)
    try:
        yield len(chosen)
    finally:
        os.sched_setaffinity(0, saved)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch  # noqa: PLC0415 - the ml extra, only for this backend

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM, and with it ru_maxrss) on Linux; False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _main_peak_mib() -> float:
    peak_kib = _status_kib("self", "VmHWM")
    if peak_kib is None:  # no /proc: the high-water mark of the whole run, KiB on Linux
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kib * 1024 / MIB


def _cpu_s(pid: int | None) -> float | None:
    """User plus system CPU seconds of another process, from /proc; None without it."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _usable_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children reaped so far (the closed workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _cores_busy_s() -> float | None:
    """CPU seconds the CPUs this process may use have spent busy, for anyone (Linux)."""
    cpus = {f"cpu{n}" for n in _usable_cpus()}
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *values = line.split()
        if name in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            ticks += user + nice + system + irq + softirq + steal  # steal: the hypervisor's
    return ticks / os.sysconf("SC_CLK_TCK")


class _Others:
    """The share of this process's CPUs that other processes (or the hypervisor) took."""

    def __init__(self) -> None:
        self._busy = _cores_busy_s()
        self._own = _own_cpu_s()
        self._started = time.perf_counter()

    def share(self, cores: int) -> float | None:
        busy = _cores_busy_s()
        if busy is None or self._busy is None:
            return None
        others_s = (busy - self._busy) - (_own_cpu_s() - self._own)
        return max(0.0, others_s) / ((time.perf_counter() - self._started) * cores)


# --- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ready:
    """An article as ``ScraperService._assemble`` leaves it: text, mentions, ready to score."""

    title: str
    summary: str
    text: str
    mentions: list[str]


def _assemble(extracted: Extracted | None, page: Page, finder: MentionFinder) -> _Ready:
    if extracted is None:
        raise RuntimeError(f"no article extracted from {page.url}")
    return _Ready(
        extracted.title,
        extracted.description,
        extracted.text,
        finder.find(f"{extracted.title}\n{extracted.text}"),
    )


def _score(backend: SentimentBackend, texts: Sequence[str]) -> list[SentimentResult]:
    results: list[SentimentResult] = []
    for start in range(0, len(texts), BATCH_SIZE):
        results.extend(backend.score_batch(texts[start : start + BATCH_SIZE]))
    return results


def _best_s(operation: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of the fastest of ``repeats`` calls."""
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        operation()
        best = min(best, (time.perf_counter() - started, time.process_time() - cpu_started))
    return best


@dataclass(frozen=True, slots=True)
class Stages:
    extract_s: float
    sentiment_s: float
    sentiment_cpu_s: float  # torch's threads included
    mentions_s: float
    articles: list[_Ready]


async def _stages(
    extractor: Extractor,
    backend: SentimentBackend,
    finder: MentionFinder,
    pages: Sequence[Page],
    repeats: int,
) -> Stages:
    """Each stage alone over every page, one page (or one batch) after the other."""
    extracted: list[Extracted | None] = []
    gc.collect()
    started = time.perf_counter()
    for page in pages:
        text, _ = decode_html(page.body, "utf-8")
        extracted.append(await extractor.extract(text, page.url))
    extract_s = time.perf_counter() - started
    articles = [
        _assemble(found, page, finder) for found, page in zip(extracted, pages, strict=True)
    ]
    joined = [f"{a.title}\n{a.text}" for a in articles]
    mentions_s, _ = _best_s(lambda: [finder.find(text) for text in joined], 3)
    texts = [article_text(a.title, a.summary, a.text) for a in articles]
    sentiment_s, sentiment_cpu_s = _best_s(lambda: _score(backend, texts), repeats)
    return Stages(extract_s, sentiment_s, sentiment_cpu_s, mentions_s, articles)


@dataclass(frozen=True, slots=True)
class Pipeline:
    articles: int
    elapsed_s: float
    main_cpu_s: float
    worker_cpu_s: float | None  # None without /proc
    mentioned: int  # articles with at least one mention


async def _pipeline(
    extractor: Extractor,
    backend: SentimentBackend,
    finder: MentionFinder,
    pages: Sequence[Page],
) -> Pipeline:
    """The daemon's shape: SOURCES polls at once, each of up to BATCH_SIZE pages."""
    slots = asyncio.Semaphore(ARTICLE_SLOTS)
    sentiment_lock = asyncio.Lock()
    polls = iter([pages[i : i + BATCH_SIZE] for i in range(0, len(pages), BATCH_SIZE)])
    scored: list[tuple[_Ready, SentimentResult]] = []

    async def prepare(page: Page) -> _Ready:
        async with slots:  # ScraperService._prepare: fetch (left out) and extract
            text, _ = decode_html(page.body, "utf-8")
            extracted = await extractor.extract(text, page.url)
        return _assemble(extracted, page, finder)  # ScraperService._assemble: mentions inline

    async def source() -> None:
        for poll in polls:  # the sources share the iterator: each takes the next poll
            ready = await asyncio.gather(*(prepare(page) for page in poll))
            texts = [article_text(a.title, a.summary, a.text) for a in ready]
            async with sentiment_lock:  # ScraperService._score: one batch at a time
                results = await asyncio.to_thread(backend.score_batch, texts)
            scored.extend(zip(ready, results, strict=True))

    gc.collect()
    pid = extractor._pid  # the worker the daemon's Extractor spawned
    worker_started = _cpu_s(pid)
    cpu_started = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(source() for _ in range(SOURCES)))
    elapsed_s = time.perf_counter() - started
    main_cpu_s = time.process_time() - cpu_started
    worker_ended = _cpu_s(pid) if extractor._pid == pid else None
    if len(scored) != len(pages):
        raise RuntimeError(f"{len(scored)} of {len(pages)} articles went through the pipeline")
    worker_cpu_s = None
    if worker_started is not None and worker_ended is not None:
        worker_cpu_s = worker_ended - worker_started
    mentioned = sum(1 for article, _ in scored if article.mentions)
    return Pipeline(len(scored), elapsed_s, main_cpu_s, worker_cpu_s, mentioned)


@dataclass(frozen=True, slots=True)
class Run:
    backend: str
    pages: int
    page_kib: float
    text_kib: float
    load_s: float
    worker_start_s: float
    stages: Stages
    pipeline: Pipeline
    main_start_mib: float | None  # RSS when the peak was reset, before the backend's load
    main_peak_mib: float
    peak_reset: bool  # main_peak_mib covers this run only, else the whole process so far
    worker_peak_mib: float | None
    tokens: float | None  # mean tokens the model saw per article
    others_share: float | None  # of the cores' time, taken by other processes during the run


async def _run(
    label: str,
    load: Callable[[], SentimentBackend],
    pages: Sequence[Page],
    warmup: Sequence[Page],
    repeats: int,
) -> Run:
    others = _Others()
    peak_reset = _reset_peak_rss()
    main_start_kib = _status_kib("self", "VmRSS")
    started = time.perf_counter()
    backend = await asyncio.to_thread(load)  # as ScraperService.start loads it
    load_s = time.perf_counter() - started
    finder = MentionFinder()
    extractor = Extractor(timeout_s=EXTRACT_TIMEOUT_S, recycle_after=NO_RECYCLING)
    try:
        started = time.perf_counter()
        await extractor.start()  # spawn, import trafilatura: what each recycling costs too
        worker_start_s = time.perf_counter() - started
        tune_gc()  # as the daemon runtime does once its service has started
        for page in warmup:  # imports and first-call costs of trafilatura, the model, the regex
            text, _ = decode_html(page.body, "utf-8")
            _assemble(await extractor.extract(text, page.url), page, finder)
        backend.score_batch([page.text for page in warmup])
        stages = await _stages(extractor, backend, finder, pages, repeats)
        pipeline = min(
            [await _pipeline(extractor, backend, finder, pages) for _ in range(repeats)],
            key=lambda run: run.elapsed_s,
        )
        worker_kib = _status_kib(extractor._pid, "VmHWM") if extractor._pid else None
    finally:
        await extractor.close()
    others_share = others.share(len(_usable_cpus()))
    if worker_kib is None:  # no /proc: the largest child reaped so far, whichever it was
        worker_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss or None
    return Run(
        backend=label,
        pages=len(pages),
        page_kib=sum(len(p.body) for p in pages) / len(pages) / 1024,
        text_kib=sum(len(a.text.encode()) for a in stages.articles) / len(pages) / 1024,
        load_s=load_s,
        worker_start_s=worker_start_s,
        stages=stages,
        pipeline=pipeline,
        main_start_mib=main_start_kib * 1024 / MIB if main_start_kib else None,
        main_peak_mib=_main_peak_mib(),
        peak_reset=peak_reset,
        worker_peak_mib=worker_kib * 1024 / MIB if worker_kib else None,
        tokens=_mean_tokens(backend, stages.articles),
        others_share=others_share,
    )


def _mean_tokens(backend: SentimentBackend, articles: Sequence[_Ready]) -> float | None:
    """The mean number of tokens the model sees per article (its input is cut at 512)."""
    if not isinstance(backend, TransformersSentiment):
        return None
    texts = [
        clip(article_text(a.title, a.summary, a.text), TRANSFORMERS_MAX_CHARS) for a in articles
    ]
    encoded = backend._pipeline.tokenizer(texts, truncation=True, max_length=backend.max_length)
    return sum(len(ids) for ids in encoded["input_ids"]) / len(texts)


@dataclass(frozen=True, slots=True)
class Report:
    cores: int
    runs: list[Run]
    model_note: str | None
    skipped: str | None


def _transformers_missing() -> str | None:
    try:
        import tokenizers  # noqa: F401, PLC0415
        import torch  # noqa: F401, PLC0415
        import transformers  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"{exc} (install the ml extra)"
    return None


async def _measure(plan: Plan, cores: int, scratch: Path) -> Report:
    pages = corpus(max(plan.pages, plan.model_pages) + WARMUP_PAGES)
    warmup, pages = pages[:WARMUP_PAGES], pages[WARMUP_PAGES:]
    runs = [await _run("lexicon", LexiconSentiment, pages[: plan.pages], warmup, plan.repeats)]
    model_note = None
    skipped = _transformers_missing()
    if skipped is None:
        model_dir = scratch / "finbert-shaped"
        texts = [page.text for page in pages]
        model_note = await asyncio.to_thread(_finbert_shaped, model_dir, texts)
        with _torch_threads(cores):
            runs.append(
                await _run(
                    "transformers (BERT-base, random weights)",
                    lambda: TransformersSentiment(str(model_dir), batch_size=BATCH_SIZE),
                    pages[: plan.model_pages],
                    warmup[:1],
                    1,
                )
            )
    return Report(cores, runs, model_note, skipped)


def main(*, quick: bool = False) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the network
    plan = QUICK if quick else FULL
    with (
        tempfile.TemporaryDirectory(prefix="cryptoviz-bench-") as scratch,
        _on_cores(CORES) as cores,
        _quiet_logs(),
    ):
        report = asyncio.run(_measure(plan, cores, Path(scratch)))
    _print(report)


# --- output ---------------------------------------------------------------------------------------


def _ms(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.2f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _parameters(report: Report) -> list[list[str]]:
    first = report.runs[0]
    rows = [
        ["cores", f"{report.cores} (this process and the worker it spawns pinned to them)"],
        [
            "pages",
            f"{first.page_kib:.1f} KiB of HTML, {first.text_kib:.1f} KiB of text extracted"
            " (news template; the fake site's stories, lengthened)",
        ],
        [
            "extraction",
            f"trafilatura in one spawned worker (timeout {EXTRACT_TIMEOUT_S:g} s; the daemon"
            f" replaces it every {EXTRACT_RECYCLE} extractions, not done within a run)",
        ],
        [
            "pipeline",
            f"{SOURCES} polls at once of {BATCH_SIZE} pages, {ARTICLE_SLOTS} article slots,"
            f" sentiment in batches of {BATCH_SIZE}, one at a time, in a thread",
        ],
    ]
    for run in report.runs:
        if run.tokens is not None:
            rows.append(
                [
                    "model",
                    f"BertConfig() defaults (BERT-base, FinBERT's shape), 3 labels, random"
                    f" weights; {report.model_note}; {run.tokens:.0f} tokens/article;"
                    f" torch threads {report.cores}",
                ]
            )
    return rows


def _stage_row(run: Run) -> list[str]:
    stages = run.stages
    serial_s = stages.extract_s + stages.sentiment_s + stages.mentions_s
    return [
        run.backend,
        str(run.pages),
        _ms(stages.extract_s, run.pages),
        _ms(stages.sentiment_s, run.pages),
        _ms(stages.mentions_s, run.pages),
        _ms(serial_s, run.pages),
        f"{stages.sentiment_cpu_s / stages.sentiment_s:.2f}",
        f"{run.pages / serial_s:,.1f}",
    ]


def _share(cpu_s: float | None, elapsed_s: float) -> str:
    return "-" if cpu_s is None else f"{cpu_s / elapsed_s:.2f}"


def _pipeline_row(run: Run) -> list[str]:
    pipeline = run.pipeline
    return [
        run.backend,
        str(pipeline.articles),
        f"{pipeline.elapsed_s:.2f}",
        f"{pipeline.articles / pipeline.elapsed_s:,.1f}",
        _share(pipeline.main_cpu_s, pipeline.elapsed_s),
        _share(pipeline.worker_cpu_s, pipeline.elapsed_s),
        "-" if run.others_share is None else f"{run.others_share:.0%}",
    ]


def _memory_row(run: Run) -> list[str]:
    return [
        run.backend,
        f"{run.load_s:.2f}",
        f"{run.worker_start_s:.2f}",
        _mib(run.main_start_mib),
        _mib(run.main_peak_mib),
        _mib(run.worker_peak_mib),
    ]


def _print(report: Report) -> None:
    recycle_ms = max(run.worker_start_s for run in report.runs) / EXTRACT_RECYCLE * 1000
    print(
        _table.render(
            "Scraper article path parameters (the real Extractor, sentiment backends and"
            " MentionFinder; no fetching, dedup or Kafka)",
            ["parameter", "value"],
            _parameters(report),
            labels=2,
        )
    )
    print()
    print(
        _table.render(
            "Scraper stages, each alone (ms/article; one extraction at a time, sentiment in"
            f" batches of {BATCH_SIZE})",
            [
                "backend",
                "articles",
                "extract",
                "sentiment",
                "mentions",
                "sum",
                "sentiment CPU/wall",
                "articles/s",
            ],
            [_stage_row(run) for run in report.runs],
        )
    )
    print()
    print(
        _table.render(
            f"Scraper pipeline end to end on {report.cores} cores, the stages concurrent as in the"
            " daemon (CPU/wall: 1.00 is one core busy)",
            [
                "backend",
                "articles",
                "seconds",
                "articles/s",
                "CPU/wall main",
                "CPU/wall worker",
                "cores taken by others",
            ],
            [_pipeline_row(run) for run in report.runs],
        )
    )
    print()
    print(
        _table.render(
            "Scraper start-up (seconds) and memory (MiB; main: this process, worker: the"
            " extraction worker)",
            ["backend", "load s", "worker start s", "main at start", "main peak", "worker peak"],
            [_memory_row(run) for run in report.runs],
        )
    )
    print()
    print(
        "Cores taken by others: the share of the pinned cores' time that other processes, or the"
        " hypervisor (steal), used during that backend's run; every figure suffers from it."
    )
    print(
        "Stages: articles/s is what the three stages give one after the other, without overlap;"
        f" sentiment CPU/wall near {report.cores:.2f} for the model means torch had every core."
        " Load s: the backend's load (the model from disk, or the lexicon). Worker start s:"
        " spawning the extraction worker, paid again at each recycling (every"
        f" {EXTRACT_RECYCLE} extractions: about {recycle_ms:.1f} ms/article more, not in the"
        " figures above)."
    )
    if all(run.peak_reset for run in report.runs):
        print(
            "Main peak: VmHWM of this process, reset just before the backend's load (main at"
            " start: the RSS then), so it covers that backend's load and runs only, not the"
            " whole benchmark process as ru_maxrss would without the reset."
            " Worker peak: VmHWM of that run's extraction worker."
        )
    else:
        print(
            "Main peak: ru_maxrss, the high-water mark of the whole benchmark process so far"
            " (earlier benchmarks included). Worker peak: VmHWM of that run's worker, or the"
            " largest child process reaped so far."
        )
    for run in report.runs:
        print(
            f"{run.backend}: {run.pipeline.mentioned} of {run.pipeline.articles} articles"
            " mention an asset."
        )
    if report.skipped is None:
        print(
            "The transformers model has random weights: its labels are meaningless, its compute"
            " per article is FinBERT's (BERT-base, 512 tokens)."
        )
    else:
        print(f"transformers backend skipped: {report.skipped}")
