"""Sentiment backends: the lexicon on clear cases, and the transformers path on a tiny model.

No pretrained sentiment model can be installed here, so the transformers tests build a BERT of a
few thousand parameters and a word-level tokenizer, save them like any Hugging Face model, and load
them through the production code. Its predictions are meaningless; what is tested is the loading,
the batching, the label mapping and the arithmetic of the score.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.scraper.sentiment import (
    LABELS,
    LEXICON_MAX_CHARS,
    NEGATIVE_THRESHOLD,
    NEUTRAL,
    POSITIVE_THRESHOLD,
    LexiconSentiment,
    SentimentResult,
    TransformersSentiment,
    article_text,
    clip,
    load_backend,
    parse_label_map,
    resolve_label_map,
)
from shared.envelope import Sentiment

ROOT = Path(__file__).resolve().parents[1]


class CapturingLogger:
    """Records structlog-style calls: (level, event, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, /, **kw: Any) -> None:
        self.calls.append(("info", event, kw))

    def warning(self, event: str, /, **kw: Any) -> None:
        self.calls.append(("warning", event, kw))


@pytest.fixture(scope="module")
def lexicon() -> LexiconSentiment:
    return LexiconSentiment()


# --- lexicon: exact labels on clear cases -------------------------------------------------------

POSITIVE = [
    "Bitcoin surges to a record high as ETF inflows soar",
    "Bitcoin hits an all-time high",
    "Analysts turn bullish on Solana after a strong rally",
    "SEC grants ETF approval; ether soars",
    "Dogecoin skyrockets as adoption grows",
]
NEGATIVE = [
    "Exchange hacked, millions stolen as token crashes",
    "SEC charges exchange founder with fraud",
    "Rug pull drains $10M from DeFi protocol",
    "Ether plunges after a bridge exploit",
    "Traders turn bearish as liquidations mount in the sell-off",
    "Stablecoin depegs and the lender files for bankruptcy",
    "Lawsuit alleges the token was a Ponzi scheme",
]
NEUTRAL_TEXTS = [
    "The foundation published its quarterly report on Tuesday.",
    "Solana network releases version 1.18",
    "Ethereum developers schedule the next core call for Thursday",
    "Bitcoin",
]


@pytest.mark.parametrize("text", POSITIVE)
def test_lexicon_labels_clearly_positive_news_positive(
    lexicon: LexiconSentiment, text: str
) -> None:
    result = lexicon.score(text)
    assert result.label == "positive"
    assert 0.3 < result.score <= 1.0


@pytest.mark.parametrize("text", NEGATIVE)
def test_lexicon_labels_clearly_negative_news_negative(
    lexicon: LexiconSentiment, text: str
) -> None:
    result = lexicon.score(text)
    assert result.label == "negative"
    assert -1.0 <= result.score < -0.3


@pytest.mark.parametrize("text", NEUTRAL_TEXTS)
def test_lexicon_labels_factual_news_neutral_with_score_zero(
    lexicon: LexiconSentiment, text: str
) -> None:
    assert lexicon.score(text) == SentimentResult(score=0.0, label="neutral")


def test_the_two_reference_headlines_score_strongly(lexicon: LexiconSentiment) -> None:
    positive = lexicon.score("Bitcoin surges to a record high as ETF inflows soar")
    negative = lexicon.score("Exchange hacked, millions stolen as token crashes")
    assert positive.label == "positive"
    assert positive.score > 0.8
    assert negative.label == "negative"
    assert negative.score < -0.8


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_empty_text_is_neutral_zero(lexicon: LexiconSentiment, text: str) -> None:
    assert lexicon.score(text) == NEUTRAL == SentimentResult(score=0.0, label="neutral")


def test_finance_phrases_count_as_one_term(lexicon: LexiconSentiment) -> None:
    # VADER alone sees no sentiment in "high", "record", "rug" or "pull".
    assert lexicon.score("Bitcoin hits a high").label == "neutral"
    assert lexicon.score("Bitcoin hits a record high").label == "positive"
    assert lexicon.score("Bitcoin hits an all-time  high").label == "positive"
    assert lexicon.score("He will pull the rug out").label == "neutral"
    assert lexicon.score("Investors lost everything in the rug pull").label == "negative"
    assert lexicon.score("Investors lost everything in the RUG-PULL").label == "negative"


def test_finance_meanings_override_vader(lexicon: LexiconSentiment) -> None:
    # VADER reads "exploit" as mildly negative (to make use of) and "fine" as positive.
    assert lexicon.score("Protocol exploit").score < -0.3
    assert lexicon.score("Exchange pays a $4 billion fine").label == "negative"


def test_negation_flips_a_finance_term(lexicon: LexiconSentiment) -> None:
    assert lexicon.score("Analysts are bullish").label == "positive"
    assert lexicon.score("Analysts are not bullish").label == "negative"


def test_label_follows_the_score_thresholds(lexicon: LexiconSentiment) -> None:
    assert (POSITIVE_THRESHOLD, NEGATIVE_THRESHOLD) == (0.05, -0.05)
    for result in lexicon.score_batch([*POSITIVE, *NEGATIVE, *NEUTRAL_TEXTS, "hmm", "ok ok"]):
        expected = (
            "positive"
            if result.score >= POSITIVE_THRESHOLD
            else "negative"
            if result.score <= NEGATIVE_THRESHOLD
            else "neutral"
        )
        assert result.label == expected


def test_scores_stay_in_range_on_extreme_text(lexicon: LexiconSentiment) -> None:
    extreme = [
        "hack crash plunge exploit rug pull! " * 400,
        "surge soar rally bullish all-time high!!! " * 400,
    ]
    low, high = lexicon.score_batch(extreme)
    assert low.label == "negative"
    assert -1.0 <= low.score < -0.9
    assert high.label == "positive"
    assert 0.9 < high.score <= 1.0


def test_batch_keeps_order_and_length(lexicon: LexiconSentiment) -> None:
    texts = [POSITIVE[0], NEGATIVE[0], "", NEUTRAL_TEXTS[0], NEGATIVE[1], POSITIVE[1]]
    results = lexicon.score_batch(texts)
    assert results == [lexicon.score(text) for text in texts]
    assert [r.label for r in results] == [
        "positive",
        "negative",
        "neutral",
        "neutral",
        "negative",
        "positive",
    ]
    assert lexicon.score_batch([]) == []


def test_only_the_lead_of_a_long_article_is_scored(lexicon: LexiconSentiment) -> None:
    filler = "The committee met on Tuesday and reviewed the agenda. " * 60
    assert len(filler) > LEXICON_MAX_CHARS
    assert lexicon.score(filler + "Exchange hacked, funds stolen.").label == "neutral"
    assert lexicon.score("Exchange hacked, funds stolen. " + filler).label == "negative"


def test_a_long_article_is_scored_quickly(lexicon: LexiconSentiment) -> None:
    article = (" ".join(NEGATIVE + POSITIVE + NEUTRAL_TEXTS) + "\n") * 300  # about 150 kB
    started = time.perf_counter()
    lexicon.score_batch([article] * 20)
    elapsed = time.perf_counter() - started
    print(f"lexicon: {elapsed / 20 * 1000:.2f} ms per {len(article):,}-character article")


def test_results_are_valid_rawarticle_sentiment(lexicon: LexiconSentiment) -> None:
    for result in lexicon.score_batch([*POSITIVE, *NEGATIVE, *NEUTRAL_TEXTS, ""]):
        wire = msgspec.json.encode(Sentiment(score=result.score, label=result.label))
        assert msgspec.json.decode(wire, type=Sentiment).label == result.label


# --- text preparation ---------------------------------------------------------------------------


def test_clip_cuts_at_the_last_sentence_end_in_the_window() -> None:
    text = "First sentence here. Second one! Third sentence is long enough to be cut."
    assert clip(text, 40) == "First sentence here. Second one!"
    assert clip(text, len(text)) == text


def test_clip_falls_back_to_whitespace_then_to_a_hard_cut() -> None:
    assert clip("one two three four five six", 15) == "one two three"
    assert clip("x" * 50, 10) == "x" * 10


def test_article_text_joins_parts_without_repeats() -> None:
    assert article_text("Title", "Summary.", "Body text.") == "Title\n\nSummary.\n\nBody text."
    # The summary is the body's first paragraph: scored once, as part of the body.
    assert article_text("Title", "Lead.", "Lead. More.") == "Title\n\nLead. More."
    # The title repeated as the summary, an empty body.
    assert article_text(" Title ", "Title", "") == "Title"
    assert article_text("", "", "") == ""


# --- label maps (pure functions, no model) ------------------------------------------------------


def test_default_label_maps_cover_finbert_sst2_and_label_n_models() -> None:
    assert resolve_label_map(["positive", "negative", "neutral"]) == {
        "positive": "positive",
        "negative": "negative",
        "neutral": "neutral",
    }
    assert resolve_label_map(["NEGATIVE", "POSITIVE"]) == {
        "negative": "negative",
        "positive": "positive",
    }
    assert resolve_label_map(["LABEL_0", "LABEL_1"]) == {
        "label_0": "negative",
        "label_1": "positive",
    }
    assert resolve_label_map(["LABEL_0", "LABEL_1", "LABEL_2"]) == {
        "label_0": "negative",
        "label_1": "neutral",
        "label_2": "positive",
    }


def test_unknown_raw_labels_without_a_map_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"\['bullish', 'bearish'\] are not mapped"):
        resolve_label_map(["bullish", "bearish", "neutral"])
    with pytest.raises(ValueError, match="not mapped"):
        resolve_label_map(["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"])


def test_an_explicit_label_map_is_used_alone_and_must_be_complete() -> None:
    mapping = {"Bullish": "positive", "BEARISH": "negative", "neutral": "neutral"}
    assert resolve_label_map(["bullish", "Bearish", "neutral"], mapping) == {
        "bullish": "positive",
        "bearish": "negative",
        "neutral": "neutral",
    }
    with pytest.raises(ValueError, match=r"\['neutral'\] are not mapped by label_map"):
        resolve_label_map(
            ["bullish", "bearish", "neutral"], {"bullish": "positive", "bearish": "negative"}
        )
    with pytest.raises(ValueError, match="must be one of positive, negative, neutral"):
        resolve_label_map(["up", "down"], {"up": "good", "down": "negative"})
    with pytest.raises(ValueError, match="no model label maps to negative"):
        resolve_label_map(["up", "flat"], {"up": "positive", "flat": "neutral"})


def test_parse_label_map_reads_a_setting() -> None:
    assert parse_label_map(" Bullish=positive, bearish = NEGATIVE ,neutral=neutral,") == {
        "bullish": "positive",
        "bearish": "negative",
        "neutral": "neutral",
    }
    with pytest.raises(ValueError, match="raw=label"):
        parse_label_map("bullish")
    with pytest.raises(ValueError, match="not a sentiment label"):
        parse_label_map("bullish=good")


# --- load_backend without a model ---------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "", "lexicon", " LEXICON "])
def test_load_backend_gives_the_lexicon_when_asked(model: str | None) -> None:
    logger = CapturingLogger()
    backend = load_backend(model, logger=logger)
    assert isinstance(backend, LexiconSentiment)
    assert backend.name == "lexicon"
    assert backend.fallback_reason is None
    assert [(level, event) for level, event, _ in logger.calls] == [
        ("info", "sentiment backend loaded")
    ]


def test_load_backend_falls_back_on_a_missing_directory(tmp_path: Path) -> None:
    logger = CapturingLogger()
    missing = str(tmp_path / "no-such-model")
    started = time.perf_counter()
    backend = load_backend(missing, logger=logger)
    assert time.perf_counter() - started < 20  # a hang guard, not a performance check
    assert isinstance(backend, LexiconSentiment)
    assert backend.fallback_reason is not None
    assert missing in backend.fallback_reason
    [(level, event, fields)] = logger.calls
    assert (level, event) == ("warning", "sentiment model unavailable, using the lexicon")
    assert fields["model"] == missing
    assert fields["backend"] == "lexicon"
    assert "no model directory" in fields["reason"]


# --- transformers, on a tiny model built here ---------------------------------------------------

WORDS = [
    *("bitcoin", "ether", "token", "exchange", "price", "market", "etf", "inflows", "record"),
    *("high", "surges", "soar", "hacked", "stolen", "crashes", "millions"),
    *("as", "to", "a", "the", "and", "of", "in", "on", "is", "was"),
]
MAX_POSITIONS = 64  # far below 512: long texts must be truncated to the model's own limit


def save_tiny_model(
    path: Path, labels: Sequence[str], *, bias: Sequence[float] | None = None
) -> Path:
    """A 1-layer BERT classifier with a word-level tokenizer, saved as a Hugging Face model.

    With ``bias``, the classifier ignores its input (zero weights): its probabilities are exactly
    ``softmax(bias)`` for every text.
    """
    import tokenizers  # noqa: PLC0415 - the ml extra, installed by the test command
    import torch  # noqa: PLC0415 - the ml extra, installed by the test command
    import transformers  # noqa: PLC0415 - the ml extra, installed by the test command

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {word: i for i, word in enumerate([*specials, *WORDS])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    # No model_max_length: the loader must take the limit from the model's config.
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=MAX_POSITIONS,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def softmax(logits: Sequence[float]) -> list[float]:
    exps = [math.exp(x) for x in logits]
    return [x / sum(exps) for x in exps]


@pytest.fixture(scope="module")
def finbert_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(
        tmp_path_factory.mktemp("finbert-like"), ["positive", "negative", "neutral"]
    )


TEXTS = [
    "Bitcoin surges to a record high as ETF inflows soar",
    "",
    "Exchange hacked, millions stolen as token crashes",
    "the market",
    "bitcoin " * 5_000,  # 40,000 characters, far beyond the model's 64 positions
    "ether price",
]


@pytest.mark.slow
def test_transformers_backend_scores_a_batch_from_a_local_directory(finbert_like: Path) -> None:
    import torch  # noqa: PLC0415 - the ml extra, installed by the test command
    import transformers  # noqa: PLC0415 - the ml extra, installed by the test command

    backend = TransformersSentiment(str(finbert_like), batch_size=4)
    assert backend.name == "transformers"
    assert backend.fallback_reason is None
    assert backend.max_length == MAX_POSITIONS
    assert backend.label_map == {
        "positive": "positive",
        "negative": "negative",
        "neutral": "neutral",
    }

    results = backend.score_batch(TEXTS)

    assert len(results) == len(TEXTS)
    assert results[1] == NEUTRAL  # empty text: no opinion, no inference
    # Each result is P(positive) - P(negative) and the argmax, text by text, in input order.
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(finbert_like))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(finbert_like))
    for text, result in zip(TEXTS, results, strict=True):
        assert -1.0 <= result.score <= 1.0
        assert result.label in LABELS
        if not text:
            continue
        encoded = tokenizer(text, truncation=True, max_length=MAX_POSITIONS, return_tensors="pt")
        with torch.no_grad():
            probabilities = model(**encoded).logits.softmax(-1)[0].tolist()
        positive, negative, _ = probabilities
        assert result.score == pytest.approx(positive - negative, abs=1e-5)
        assert (
            result.label
            == ["positive", "negative", "neutral"][probabilities.index(max(probabilities))]
        )
    assert backend.score_batch(list(reversed(TEXTS))) == pytest.approx(list(reversed(results)))
    assert backend.score_batch([]) == []


@pytest.mark.slow
def test_score_is_positive_minus_negative_probability(tmp_path: Path) -> None:
    bias = [2.0, 0.5, 0.0]  # finbert order: positive, negative, neutral
    model = save_tiny_model(tmp_path, ["positive", "negative", "neutral"], bias=bias)
    [result] = TransformersSentiment(str(model)).score_batch(["bitcoin surges"])
    p_positive, p_negative, _ = softmax(bias)
    assert result.score == pytest.approx(p_positive - p_negative, abs=1e-6)
    assert result.label == "positive"


@pytest.mark.slow
def test_sst2_style_labels_map_by_name_not_position(tmp_path: Path) -> None:
    bias = [0.0, 3.0]
    model = save_tiny_model(tmp_path, ["NEGATIVE", "POSITIVE"], bias=bias)
    [result] = TransformersSentiment(str(model)).score_batch(["the market"])
    p_negative, p_positive = softmax(bias)
    assert result.label == "positive"
    assert result.score == pytest.approx(p_positive - p_negative, abs=1e-6)


@pytest.mark.slow
def test_custom_labels_work_with_an_explicit_label_map(tmp_path: Path) -> None:
    bias = [0.0, 2.5, 0.5]
    model = save_tiny_model(tmp_path, ["bullish", "bearish", "neutral"], bias=bias)
    backend = TransformersSentiment(
        str(model),
        label_map={"bullish": "positive", "bearish": "negative", "neutral": "neutral"},
    )
    results = backend.score_batch(["bitcoin crashes", "ether", ""])
    p_bullish, p_bearish, _ = softmax(bias)
    assert [r.label for r in results] == ["negative", "negative", "neutral"]
    assert results[0].score == pytest.approx(p_bullish - p_bearish, abs=1e-6)
    assert results[0].score < 0


@pytest.mark.slow
def test_custom_labels_without_a_map_are_refused_at_load_time(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, ["bullish", "bearish", "neutral"])
    with pytest.raises(ValueError, match="bullish") as caught:
        TransformersSentiment(str(model))
    assert "label_map" in str(caught.value)

    logger = CapturingLogger()
    backend = load_backend(str(model), logger=logger)
    assert isinstance(backend, LexiconSentiment)
    assert backend.fallback_reason is not None
    assert "bullish" in backend.fallback_reason
    assert logger.calls[0][:2] == ("warning", "sentiment model unavailable, using the lexicon")


@pytest.mark.slow
def test_load_backend_loads_a_local_model(finbert_like: Path) -> None:
    logger = CapturingLogger()
    backend = load_backend(str(finbert_like), logger=logger)
    assert isinstance(backend, TransformersSentiment)
    assert backend.name == "transformers"
    [(level, event, fields)] = logger.calls
    assert (level, event) == ("info", "sentiment backend loaded")
    assert fields["backend"] == "transformers"
    assert fields["model"] == str(finbert_like)
    assert [r.label in LABELS for r in backend.score_batch(TEXTS)] == [True] * len(TEXTS)


@pytest.mark.slow
def test_load_backend_with_a_label_map_for_custom_labels(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path, ["bullish", "bearish", "neutral"])
    backend = load_backend(
        str(model),
        logger=CapturingLogger(),
        label_map=parse_label_map("bullish=positive,bearish=negative,neutral=neutral"),
    )
    assert isinstance(backend, TransformersSentiment)
    assert backend.label_map == {"bullish": "positive", "bearish": "negative", "neutral": "neutral"}


# --- the hub: never contacted -------------------------------------------------------------------

# Runs load_backend in a fresh interpreter (the hub reads HF_HOME and HF_HUB_OFFLINE at import)
# with every connection and DNS lookup refused and recorded.
PROBE = textwrap.dedent(
    """
    import json, socket, sys, time

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network disabled by the test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse

    from services.scraper.sentiment import load_backend

    class Quiet:
        def info(self, event, **kw): pass
        def warning(self, event, **kw): pass

    started = time.perf_counter()
    backend = load_backend(sys.argv[1], logger=Quiet())
    print(json.dumps({
        "backend": backend.name,
        "fallback_reason": getattr(backend, "fallback_reason", None),
        "seconds": time.perf_counter() - started,
        "attempts": attempts,
    }))
    """
)


def probe(model: str, hf_home: Path, *, offline: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(hf_home)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, model],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE-unset"])
def test_an_uncached_hub_model_falls_back_fast_without_touching_the_network(
    tmp_path: Path, offline: bool
) -> None:
    result = probe("ProsusAI/finbert", tmp_path / "empty-hf-home", offline=offline)
    assert result["backend"] == "lexicon"
    assert "ProsusAI/finbert" in result["fallback_reason"]
    assert "not in the local Hugging Face cache" in result["fallback_reason"]
    assert result["attempts"] == []
    assert result["seconds"] < 20  # a hang guard, not a performance check
    print(f"fallback decided in {result['seconds']:.3f} s")


@pytest.mark.slow
def test_a_cached_hub_model_loads_offline(tmp_path: Path) -> None:
    # The Hugging Face cache layout: a snapshot per commit, and refs/main naming the commit.
    hf_home = tmp_path / "hf-home"
    repo = hf_home / "hub" / "models--cryptoviz-tests--tiny-finbert"
    commit = "0123456789abcdef0123456789abcdef01234567"
    save_tiny_model(repo / "snapshots" / commit, ["positive", "negative", "neutral"])
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)

    result = probe("cryptoviz-tests/tiny-finbert", hf_home, offline=False)

    assert result["backend"] == "transformers", result["fallback_reason"]
    assert result["attempts"] == []
