"""Article sentiment: a transformers classifier when a model is available, a lexicon otherwise.

Every backend turns texts into :class:`SentimentResult` values that fit ``rawarticle.sentiment``:
``score`` in [-1, 1] (positive minus negative) and ``label`` one of positive/negative/neutral.
``score_batch`` is synchronous and CPU-bound; the daemon runs it in an executor, off the event loop.

Backends (``backend.name`` is the metric label):

- ``transformers`` (:class:`TransformersSentiment`): a text-classification model (a model id such as
  ``ProsusAI/finbert``, or a local directory). It loads from the local path or the Hugging Face
  cache only, never from the network: see :func:`load_backend`. ``score`` is P(positive) minus
  P(negative); ``label`` is the mapped label with the highest total probability. The mapping from
  the model's raw labels to ours is explicit (:data:`NAMED_LABELS`, :data:`LABEL_N_CONVENTIONS`, or
  ``label_map``); a model whose labels are not all mapped is refused at load time.
- ``lexicon`` (:class:`LexiconSentiment`): VADER with finance and crypto terms added
  (:data:`FINANCE_LEXICON`, :data:`FINANCE_PHRASES`). ``score`` is VADER's ``compound``, the
  normalised sum of the valences of the words (positive ones minus negative ones) in [-1, 1];
  ``label`` is positive when ``compound >= 0.05``, negative when ``<= -0.05``, else neutral (the
  thresholds VADER's authors recommend). Only the first :data:`LEXICON_MAX_CHARS` characters are
  scored, cut at a sentence end: an article's stance is in its title and lead, and ``compound`` is a
  saturating sum, so a whole long body drives every article towards +1 or -1.

Text that is empty or only whitespace is neutral with score 0.0 in both backends: no text, no
opinion. :func:`article_text` builds the text to score from an article's title, summary and body.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, get_args

import structlog
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

Label = Literal["positive", "negative", "neutral"]
LABELS: Final[tuple[Label, ...]] = get_args(Label)

DEFAULT_MODEL: Final = "ProsusAI/finbert"
LEXICON: Final = "lexicon"

# VADER's recommended cut-offs on ``compound``.
POSITIVE_THRESHOLD: Final = 0.05
NEGATIVE_THRESHOLD: Final = -0.05

# About the title, the summary and the first few paragraphs of the body.
LEXICON_MAX_CHARS: Final = 2_000
# 512 tokens are about 2,000 to 2,500 characters of English news; the tokenizer truncates exactly,
# this only spares it tokenizing a 50,000-character body to keep the first 512 tokens.
TRANSFORMERS_MAX_CHARS: Final = 4_000
TRANSFORMERS_MAX_TOKENS: Final = 512


@dataclass(frozen=True, slots=True)
class SentimentResult:
    score: float  # in [-1, 1], positive minus negative
    label: Label


NEUTRAL: Final = SentimentResult(score=0.0, label="neutral")


class SentimentBackend(Protocol):
    name: str  # "transformers" or "lexicon": the metric label

    def score_batch(self, texts: Sequence[str]) -> list[SentimentResult]:
        """One result per text, in order. Synchronous and CPU-bound: run it in an executor."""
        ...


class Logger(Protocol):
    """The part of a structlog logger this module uses."""

    def info(self, event: str, /, **kw: Any) -> Any: ...

    def warning(self, event: str, /, **kw: Any) -> Any: ...


log: Logger = structlog.get_logger(__name__)


def article_text(title: str, summary: str, body: str) -> str:
    """The text to score: title, summary and body, blank-line separated, without repeats.

    Feeds often use the title or the body's first paragraph as the summary, and extractors often
    start the body with the title: a part that another part starts with (or repeats) is dropped,
    so it is not weighed twice.
    """
    parts = [part.strip() for part in (title, summary, body) if part.strip()]
    kept = [
        part
        for i, part in enumerate(parts)
        if not any(
            (other.startswith(part) and other != part) or (other == part and j < i)
            for j, other in enumerate(parts)
            if j != i
        )
    ]
    return "\n\n".join(kept)


# A sentence end: . ! ? or an ellipsis, maybe closing quotes or brackets, then whitespace; or \n.
_SENTENCE_END = re.compile(r"[.!?\u2026](?=[\"'\u201d\u2019)\]]*\s)|\n")


def clip(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``text``, cut at a sentence end when one is near.

    Cuts after the last sentence end (. ! ? … or a line break) in the window when that keeps at
    least half of it, else at the last whitespace, else exactly at ``max_chars``.
    """
    if len(text) <= max_chars:
        return text
    window = text[: max_chars + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= max_chars // 2:
        return window[: ends[-1]].rstrip()
    space = window.rfind(" ", 0, max_chars + 1)
    if space >= max_chars // 2:
        return window[:space]
    return text[:max_chars]


def _label_for(score: float) -> Label:
    if score >= POSITIVE_THRESHOLD:
        return "positive"
    if score <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


# Valences on VADER's scale (about -4 to +4; VADER's own strong words sit around +-2 to +-3).
# Word forms are listed one by one: VADER looks words up as written, it does not stem.
# Entries VADER already has are listed when the finance meaning differs or is stronger:
# "exploit" (-0.4 in VADER: to make use of) is an attack here, "fine" (+0.8) a penalty.
FINANCE_LEXICON: Final[Mapping[str, float]] = {
    # market direction
    "bullish": 2.5,
    "bearish": -2.5,
    "rally": 2.0,
    "rallies": 2.0,
    "rallied": 2.0,
    "rallying": 2.0,
    "surge": 2.0,
    "surges": 2.0,
    "surged": 2.0,
    "surging": 2.0,
    "soar": 2.2,
    "soars": 2.2,
    "soared": 2.2,
    "soaring": 2.2,
    "skyrocket": 2.5,
    "skyrockets": 2.5,
    "skyrocketed": 2.5,
    "skyrocketing": 2.5,
    "jump": 1.5,
    "jumps": 1.5,
    "jumped": 1.5,
    "climb": 1.2,
    "climbs": 1.2,
    "climbed": 1.2,
    "rebound": 1.8,
    "rebounds": 1.8,
    "rebounded": 1.8,
    "recovery": 1.5,
    "recovers": 1.5,
    "outperform": 1.5,
    "outperforms": 1.5,
    "inflows": 1.5,
    "inflow": 1.5,
    "adoption": 1.5,
    "breakthrough": 2.0,
    "milestone": 1.5,
    "approve": 1.8,
    "approves": 1.8,
    "crash": -2.5,
    "crashes": -2.5,
    "crashed": -2.5,
    "crashing": -2.5,
    "plunge": -2.3,
    "plunges": -2.3,
    "plunged": -2.3,
    "plunging": -2.3,
    "plummet": -2.5,
    "plummets": -2.5,
    "plummeted": -2.5,
    "tumble": -2.0,
    "tumbles": -2.0,
    "tumbled": -2.0,
    "tumbling": -2.0,
    "slump": -2.0,
    "slumps": -2.0,
    "slumped": -2.0,
    "tank": -1.8,
    "tanks": -1.8,
    "tanked": -1.8,
    "selloff": -2.0,
    "downturn": -2.0,
    "capitulation": -2.0,
    "outflows": -1.5,
    "outflow": -1.5,
    "underperform": -1.5,
    "underperforms": -1.5,
    "downgrade": -1.5,
    "downgraded": -1.5,
    "liquidation": -1.8,
    "liquidations": -1.8,
    "liquidated": -2.0,
    "rekt": -2.5,
    "bubble": -1.0,
    # security incidents
    "hack": -2.5,
    "hacks": -2.5,
    "hacked": -2.5,
    "hacker": -2.0,
    "hackers": -2.0,
    "exploit": -2.0,
    "exploits": -2.0,
    "exploited": -2.2,
    "exploiter": -2.0,
    "drained": -2.2,
    "theft": -2.5,
    "breach": -2.0,
    "phishing": -2.0,
    "ransomware": -2.5,
    "scammer": -2.8,
    "scammers": -2.8,
    "ponzi": -3.0,
    "rugpull": -3.2,
    # solvency, pegs, listings
    "insolvent": -3.0,
    "insolvency": -3.0,
    "bankruptcy": -3.0,
    "depeg": -2.5,
    "depegs": -2.5,
    "depegged": -2.5,
    "delist": -2.0,
    "delists": -2.0,
    "delisted": -2.0,
    "delisting": -2.0,
    "halt": -1.2,
    "halts": -1.5,
    "halted": -1.5,
    # law and enforcement
    "lawsuit": -2.0,
    "lawsuits": -2.0,
    "sue": -2.0,
    "sues": -2.0,
    "sued": -2.0,
    "indicted": -2.5,
    "indictment": -2.5,
    "fine": -1.0,
    "fines": -1.5,
    "fined": -2.0,
    "sanctioned": -2.0,
    "sanctions": -1.5,
    "probe": -1.2,
    "subpoena": -1.5,
    "laundering": -2.5,
}

# Phrases VADER cannot see (it scores single words): each is rewritten to one placeholder word,
# then scored with the valence here. Matched case-insensitively, across any run of whitespace or
# hyphens between the words.
FINANCE_PHRASES: Final[Mapping[str, float]] = {
    "all-time high": 2.5,
    "all-time highs": 2.5,
    "record high": 2.5,
    "record highs": 2.5,
    "all-time low": -2.0,
    "record low": -2.0,
    "etf approval": 2.8,
    "bull run": 2.0,
    "bull market": 2.0,
    "golden cross": 1.8,
    "bear market": -2.0,
    "death cross": -1.8,
    "sell-off": -2.0,
    "sell-offs": -2.0,
    "flash crash": -2.8,
    "wipes out": -2.0,
    "wiped out": -2.0,
    "bank run": -2.5,
    "rug pull": -3.2,
    "rug pulled": -3.2,
    "exit scam": -3.2,
    "sec charges": -2.5,
    "sec sues": -2.5,
    "sec lawsuit": -2.5,
}


def _placeholder(phrase: str) -> str:
    """``"All-time  high"`` -> ``"cvphrasealltimehigh"``: one lower-case word VADER can look up."""
    return "cvphrase" + re.sub(r"[^a-z]", "", phrase.lower())


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    def words(phrase: str) -> str:
        return r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", phrase))

    longest_first = sorted(phrases, key=len, reverse=True)
    return re.compile(
        r"(?<!\w)(?:" + "|".join(words(p) for p in longest_first) + r")(?!\w)", re.IGNORECASE
    )


class LexiconSentiment:
    """VADER plus finance and crypto terms: no model, no network, well under a millisecond a text.

    ``fallback_reason`` says why this backend runs in place of a model (``None`` when it was
    asked for): :func:`load_backend` sets it, the daemon logs it and exports it as a metric.
    VADER only reads its lexicon after construction, so one instance serves several threads.
    """

    name: str = "lexicon"

    def __init__(self, *, fallback_reason: str | None = None) -> None:
        self.fallback_reason = fallback_reason
        self._analyzer = SentimentIntensityAnalyzer()
        self._analyzer.lexicon.update(FINANCE_LEXICON)
        self._analyzer.lexicon.update({_placeholder(p): v for p, v in FINANCE_PHRASES.items()})
        self._phrases = _phrase_pattern(list(FINANCE_PHRASES))

    def score(self, text: str) -> SentimentResult:
        text = clip(text.strip(), LEXICON_MAX_CHARS)
        if not text:
            return NEUTRAL
        rewritten = self._phrases.sub(lambda match: _placeholder(match.group()), text)
        compound = float(self._analyzer.polarity_scores(rewritten)["compound"])
        score = min(1.0, max(-1.0, compound))
        return SentimentResult(score=score, label=_label_for(score))

    def score_batch(self, texts: Sequence[str]) -> list[SentimentResult]:
        return [self.score(text) for text in texts]


# Raw labels (lower-cased) whose meaning is in their name: finbert's positive/negative/neutral,
# SST-2's POSITIVE/NEGATIVE, and the POS/NEG/NEU of several tweet models.
NAMED_LABELS: Final[Mapping[str, Label]] = {
    "positive": "positive",
    "negative": "negative",
    "neutral": "neutral",
    "pos": "positive",
    "neg": "negative",
    "neu": "neutral",
}

# Models that kept the generic LABEL_<n> names, by their exact label set. Two labels: the SST-2
# convention (0 negative, 1 positive). Three: the cardiffnlp twitter-roberta-base-sentiment
# convention (0 negative, 1 neutral, 2 positive). A model using LABEL_<n> any other way needs an
# explicit ``label_map``.
LABEL_N_CONVENTIONS: Final[Mapping[frozenset[str], Mapping[str, Label]]] = {
    frozenset({"label_0", "label_1"}): {"label_0": "negative", "label_1": "positive"},
    frozenset({"label_0", "label_1", "label_2"}): {
        "label_0": "negative",
        "label_1": "neutral",
        "label_2": "positive",
    },
}


def resolve_label_map(
    raw_labels: Sequence[str], label_map: Mapping[str, str] | None = None
) -> dict[str, Label]:
    """The mapping from a model's raw labels (lower-cased) to ours, or a ValueError saying why.

    With ``label_map``, that mapping alone is used (keys compared lower-cased). Without it, the
    defaults: :data:`NAMED_LABELS` when every raw label is a named one, else the
    :data:`LABEL_N_CONVENTIONS` entry for exactly this label set. Every raw label must be mapped,
    and at least one to positive and one to negative: a score needs both ends.
    """
    raw = [label.lower() for label in raw_labels]
    if label_map is not None:
        mapping: Mapping[str, str] = {key.lower(): value for key, value in label_map.items()}
        origin = "label_map"
    elif all(label in NAMED_LABELS for label in raw):
        mapping, origin = NAMED_LABELS, "the default named labels"
    else:
        mapping = LABEL_N_CONVENTIONS.get(frozenset(raw), NAMED_LABELS)
        origin = "the default label mappings"
    bad_values = sorted({v for v in mapping.values() if v not in LABELS})
    if bad_values:
        raise ValueError(f"label_map values must be one of {', '.join(LABELS)}; got {bad_values}")
    missing = [label for label in raw if label not in mapping]
    if missing:
        raise ValueError(
            f"model labels {missing} are not mapped by {origin}; pass a label_map mapping each of "
            f"{raw} to one of {', '.join(LABELS)}"
        )
    resolved: dict[str, Label] = {label: _as_label(mapping[label]) for label in raw}
    for needed in ("positive", "negative"):
        if needed not in resolved.values():
            raise ValueError(f"no model label maps to {needed}: {resolved}")
    return resolved


def _as_label(value: str) -> Label:
    for label in LABELS:
        if value == label:
            return label
    raise ValueError(f"not a sentiment label: {value!r}")


def parse_label_map(spec: str) -> dict[str, Label]:
    """``"bullish=positive,bearish=negative,neutral=neutral"`` -> a label map (for settings)."""
    result: dict[str, Label] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        raw, sep, label = item.partition("=")
        if not sep or not raw.strip():
            raise ValueError(f"label map entries are raw=label, got {item.strip()!r}")
        result[raw.strip().lower()] = _as_label(label.strip().lower())
    return result


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face hub offline mode for the duration of a load.

    ``local_files_only`` alone is not enough: huggingface_hub still makes best-effort requests
    (an agent registry fetched while building request headers, up to 3 s each) unless offline
    mode is on. The hub reads ``HF_HUB_OFFLINE`` once, at import: the variable covers a first
    import inside this block, the module constant an earlier one.
    """
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = None
    saved_constant: Any = None
    try:
        constants = importlib.import_module("huggingface_hub.constants")
        saved_constant = getattr(constants, "HF_HUB_OFFLINE", None)
        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    try:
        yield
    finally:
        if saved_env is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
        if constants is not None and saved_constant is not None:
            constants.HF_HUB_OFFLINE = saved_constant


def _local_source(model: str) -> str:
    """What to load ``model`` from: its directory, or its hub id when the local cache has it.

    Raises when neither: cheap (no transformers or torch import), so a missing model falls back
    in milliseconds instead of the seconds an import of torch takes.
    """
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        return path
    if os.path.isabs(path) or model.startswith((".", "~")):
        raise FileNotFoundError(f"no model directory at {model}")
    hub: Any = importlib.import_module("huggingface_hub")
    if not isinstance(hub.try_to_load_from_cache(model, "config.json"), str):
        raise FileNotFoundError(
            "not a local directory and not in the local Hugging Face cache "
            f"({hub.constants.HF_HUB_CACHE}); the hub is never contacted at load time"
        )
    return model


class TransformersSentiment:
    """A Hugging Face text-classification model on the CPU, loaded from disk only.

    ``model`` is a local directory or a hub model id already in the local cache. Loading never
    touches the network (see :func:`_hub_offline`) and raises when the files are not there, or
    when the model's labels are not all mapped (:func:`resolve_label_map`).
    """

    name: str = "transformers"

    def __init__(
        self,
        model: str,
        *,
        label_map: Mapping[str, Label] | None = None,
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.fallback_reason: str | None = None
        with _hub_offline():
            source = _local_source(model)
            transformers: Any = importlib.import_module("transformers")
            # tqdm bars on stderr would break the JSON log stream.
            transformers.utils.logging.disable_progress_bar()
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
            raw_labels = [str(config.id2label[i]) for i in sorted(config.id2label)]
            self.label_map = resolve_label_map(raw_labels, label_map)
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
            classifier = transformers.AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=True
            )
            classifier.eval()
            self._pipeline: Any = transformers.pipeline(
                "text-classification",
                model=classifier,
                tokenizer=tokenizer,
                device="cpu",
                top_k=None,
            )
        self.max_length = min(
            TRANSFORMERS_MAX_TOKENS,
            int(getattr(tokenizer, "model_max_length", TRANSFORMERS_MAX_TOKENS)),
            int(getattr(config, "max_position_embeddings", TRANSFORMERS_MAX_TOKENS)),
        )
        # One batch at a time: a pipeline is not documented as thread-safe, and torch already
        # spreads one batch over the cores.
        self._lock = threading.Lock()

    def score_batch(self, texts: Sequence[str]) -> list[SentimentResult]:
        results: list[SentimentResult] = [NEUTRAL] * len(texts)
        todo = [
            (i, clip(text.strip(), TRANSFORMERS_MAX_CHARS))
            for i, text in enumerate(texts)
            if text.strip()
        ]
        if not todo:
            return results
        with self._lock:
            outputs: Any = self._pipeline(
                [text for _, text in todo],
                batch_size=self.batch_size,
                truncation=True,
                max_length=self.max_length,
            )
        for (i, _), scores in zip(todo, outputs, strict=True):
            results[i] = self._result(scores)
        return results

    def _result(self, scores: Sequence[Mapping[str, Any]]) -> SentimentResult:
        totals: dict[Label, float] = dict.fromkeys(LABELS, 0.0)
        for item in scores:
            totals[self.label_map[str(item["label"]).lower()]] += float(item["score"])
        score = totals["positive"] - totals["negative"]
        score = 0.0 if not math.isfinite(score) else min(1.0, max(-1.0, score))
        label = max(LABELS, key=lambda name: totals[name])  # ties: positive, negative, neutral
        return SentimentResult(score=score, label=label)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def load_backend(
    model: str | None,
    *,
    logger: Logger | None = None,
    label_map: Mapping[str, Label] | None = None,
    batch_size: int = 16,
) -> SentimentBackend:
    """The sentiment backend for a configured model (``CRYPTOVIZ_SENTIMENT_MODEL``).

    ``None``, ``""`` or ``"lexicon"``: the lexicon, by choice (``fallback_reason`` None). Anything
    else is a model id or local path for :class:`TransformersSentiment`, loaded from disk only
    (local path or cache; with nothing there it fails in about a second, it never waits on the
    hub). On any failure, a warning naming the model and the reason, and the lexicon with that
    reason in ``fallback_reason``.
    """
    logger = logger or log
    if model is None or not model.strip() or model.strip().lower() == LEXICON:
        logger.info("sentiment backend loaded", backend=LEXICON, model=None)
        return LexiconSentiment()
    model = model.strip()
    started = time.perf_counter()
    try:
        backend = TransformersSentiment(model, label_map=label_map, batch_size=batch_size)
    except ImportError as exc:
        reason = f"{_reason(exc)} (is the ml extra, transformers and torch, installed?)"
    except Exception as exc:  # noqa: BLE001 - whatever a model load raises, the scraper goes on
        reason = _reason(exc)
    else:
        logger.info(
            "sentiment backend loaded",
            backend=backend.name,
            model=model,
            labels=backend.label_map,
            load_seconds=round(time.perf_counter() - started, 3),
        )
        return backend
    logger.warning(
        "sentiment model unavailable, using the lexicon",
        model=model,
        reason=reason,
        backend=LEXICON,
        load_seconds=round(time.perf_counter() - started, 3),
    )
    return LexiconSentiment(fallback_reason=f"model {model!r} unavailable: {reason}")
