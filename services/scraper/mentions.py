"""Which crypto assets an article mentions, as canonical tickers (``cryptocurrencies_mentioned``).

The assets come from ``assets.toml`` next to this module (the maintained list; its header explains
each field). Tickers are the base-asset spelling of Kraken WS v2 pairs (BTC, not XBT), so mentions
join prices. :class:`MentionFinder` compiles every form of every asset into one regular expression
and returns the tickers in order of first occurrence, without duplicates.

Matching rules:

- **Whole words only.** A form never matches inside a word: no ETH in "method" or "Ethernet", no
  SOL in "solution", no ADA in "ADAPT", no DOT in "dotted". Letters, digits and ``_`` are word
  characters; anything else (space, punctuation, ``'s``, a hyphen) ends a word, so "bitcoin's",
  "Bitcoin-backed" and "BTC-USD" all mention BTC.
- **Longest form first.** Where forms overlap, the longest wins: "Bitcoin Cash" is BCH, not BTC;
  "Ethereum Classic" is ETC, not ETH; "Wrapped Bitcoin" is WBTC. Words of a multi-word form may be
  separated by any whitespace.
- **Names** (``names``, and aliases not in upper case such as "ether") match case-insensitively:
  "Bitcoin", "bitcoin", "BITCOIN".
- **Proper names** (``proper_names``) match exactly as written: "Avalanche" is AVAX, "an avalanche
  of sell orders" is not.
- **Tickers** (``ticker``, and upper-case aliases such as XBT or MATIC) match case-sensitively, in
  upper case only, optionally "$"-prefixed: "SOL" and "$SOL" are SOL, "sol" is not.
- **Tickers that are also words or acronyms** (``ticker_needs_context = true``: LINK, NEAR, DOT, OP,
  DOGE...) count only with evidence. The ticker is "$"-prefixed ("$LINK"); or in parentheses
  ("Chainlink (LINK)"); or followed by a crypto noun ("LINK token", "NEAR price"); or a pair's base
  ("LINK/USD", "DOT-USDT"); or listed with another asset mention, separated by a comma, a slash,
  "&", "and" or "or" ("BTC, ETH and LINK"); or the same asset is otherwise mentioned in the text.
  So "near the top", "the link", "DOGE cuts spending", "OP-ED" and "BITCOIN HOVERS NEAR RECORD"
  mention no NEAR, LINK, DOGE or OP. The flag covers the ticker itself, not ticker-style aliases
  (XDG is no word: it is always DOGE).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

ASSETS_FILE: Final = "assets.toml"

_TICKER = re.compile(r"[A-Z0-9]{2,12}")
_WORD_CHARS = re.compile(r"\w")

# What may follow a ticker that needs context: a crypto noun, or the quote side of a pair.
_NOUN_AFTER = re.compile(
    r"[\s-]+(?:tokens?|coins?|prices?|holders|staking|stakers|futures|perps|options|etfs?|etps?"
    r"|network|protocol|blockchain|chain|mainnet|ecosystem|airdrop|whales|treasury|supply)(?!\w)",
    re.IGNORECASE,
)
_PAIR_AFTER = re.compile(r"[/-](?:USD|USDT|USDC|EUR|GBP|JPY|CAD|AUD|CHF|BTC|ETH)(?!\w)")
# What may separate two mentions of a list: ", ", " / ", " & ", " and ", ", and ", " or "...
_LIST_SEPARATOR = re.compile(r"\s*(?:[,/&+|;]|,?\s*\b(?:and|or)\b)\s*", re.IGNORECASE)

FormKind = Literal["name", "proper", "ticker"]


@dataclass(frozen=True, slots=True)
class Asset:
    """One asset: its canonical ticker and the ways articles write it (see ``assets.toml``)."""

    ticker: str
    names: tuple[str, ...]  # case-insensitive
    aliases: tuple[str, ...]  # upper case: ticker-style (XBT); otherwise name-style ("ether")
    proper_names: tuple[str, ...] = ()  # case-sensitive, exactly as written
    ticker_needs_context: bool = False  # ticker is also a word or acronym: count it with evidence

    def __post_init__(self) -> None:
        if not _TICKER.fullmatch(self.ticker):
            raise ValueError(f"ticker {self.ticker!r} is not 2 to 12 upper-case letters or digits")
        for form in (*self.names, *self.aliases, *self.proper_names):
            if not isinstance(form, str) or not _WORD_CHARS.match(form) or form != form.strip():
                raise ValueError(f"{self.ticker}: form {form!r} must start with a word character")

    def forms(self) -> Iterable[tuple[FormKind, str]]:
        """Every way of writing this asset, with the rule it is matched by."""
        yield "ticker", self.ticker
        for alias in self.aliases:
            yield ("ticker" if _TICKER.fullmatch(alias) else "name"), alias
        for name in self.names:
            yield "name", name
        for name in self.proper_names:
            yield "proper", name


_FIELDS: Final = {"ticker", "names", "aliases", "proper_names", "ticker_needs_context"}


class AssetListError(ValueError):
    """The asset list is malformed: the message names the file, the entry and the problem."""


def _strings(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AssetListError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def parse_assets(text: str, origin: str = ASSETS_FILE) -> tuple[Asset, ...]:
    """Assets from the TOML of ``assets.toml``; an error names the entry and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssetListError(f"{origin}: {exc}") from None
    if set(data) - {"asset"}:
        raise AssetListError(f"{origin}: unknown top-level keys {sorted(set(data) - {'asset'})}")
    entries = data.get("asset", [])
    if not isinstance(entries, list) or not entries:
        raise AssetListError(f"{origin}: no [[asset]] entries")
    assets: list[Asset] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{origin}: asset #{number} ({entry.get('ticker', 'no ticker')})"
        unknown = set(entry) - _FIELDS
        if unknown:
            raise AssetListError(
                f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_FIELDS)}"
            )
        ticker = entry.get("ticker")
        if not isinstance(ticker, str):
            raise AssetListError(f"{where}: ticker must be a string")
        flag = entry.get("ticker_needs_context", False)
        if not isinstance(flag, bool):
            raise AssetListError(f"{where}: ticker_needs_context must be true or false")
        try:
            assets.append(
                Asset(
                    ticker=ticker,
                    names=_strings(entry, "names", where),
                    aliases=_strings(entry, "aliases", where),
                    proper_names=_strings(entry, "proper_names", where),
                    ticker_needs_context=flag,
                )
            )
        except ValueError as exc:
            raise AssetListError(f"{where}: {exc}") from None
    try:
        _check_unique(assets)
    except ValueError as exc:
        raise AssetListError(f"{origin}: {exc}") from None
    return tuple(assets)


@functools.cache
def load_assets() -> tuple[Asset, ...]:
    """The maintained asset list shipped with the scraper (``assets.toml``)."""
    resource = importlib.resources.files(__package__ or "services.scraper") / ASSETS_FILE
    return parse_assets(resource.read_text(encoding="utf-8"))


def _check_unique(assets: Sequence[Asset]) -> None:
    """Refuse a ticker listed twice, and a form that could mean two assets: the same text, or a
    case-insensitive name equal to another asset's form in any case."""
    tickers = [asset.ticker for asset in assets]
    duplicates = sorted({t for t in tickers if tickers.count(t) > 1})
    if duplicates:
        raise ValueError(f"tickers listed more than once: {duplicates}")
    exact: dict[str, str] = {}
    folded: dict[str, set[str]] = {}
    names: list[tuple[str, str]] = []
    for asset in assets:
        for kind, form in asset.forms():
            text = " ".join(form.split())
            owner = exact.setdefault(text, asset.ticker)
            if owner != asset.ticker:
                raise ValueError(f"{form!r} is listed for both {owner} and {asset.ticker}")
            folded.setdefault(text.casefold(), set()).add(asset.ticker)
            if kind == "name":
                names.append((text, asset.ticker))
    for text, ticker in names:
        others = sorted(folded[text.casefold()] - {ticker})
        if others:
            raise ValueError(f"name {text!r} of {ticker} also matches a form of {others[0]}")


@dataclass(frozen=True, slots=True)
class _Form:
    asset: Asset
    kind: FormKind
    needs_context: bool  # the asset's own ticker, flagged ticker_needs_context


@dataclass(frozen=True, slots=True)
class _Match:
    form: _Form
    start: int
    end: int
    dollar: bool


def _literal(text: str) -> str:
    """``text`` as a pattern, any run of whitespace in it matching any run of whitespace."""
    parts = re.split(r"(\s+)", text)
    return "".join(r"\s+" if part.isspace() else re.escape(part) for part in parts if part)


def _branches(kind: FormKind, form: str) -> list[tuple[str, str]]:
    """(first character, pattern for the rest) pairs that together match ``form`` under its rule.

    Splitting off the first character lets the expression dispatch on it: about 30 times faster
    than one flat alternation of every form, which Python's engine tries one by one.
    """
    first, rest = form[0], form[1:]
    if kind == "name":
        return [
            (case, f"(?i:{_literal(rest)})") for case in dict.fromkeys(first + first.swapcase())
        ]
    if kind == "ticker":
        return [(first, _literal(rest)), ("$", _literal(form))]
    return [(first, _literal(rest))]


class MentionFinder:
    """Finds asset mentions in text with one compiled regular expression (see the module doc)."""

    def __init__(self, assets: Sequence[Asset] | None = None) -> None:
        self.assets: tuple[Asset, ...] = load_assets() if assets is None else tuple(assets)
        _check_unique(self.assets)
        forms: dict[tuple[FormKind, str], _Form] = {}
        for asset in self.assets:
            for kind, written in asset.forms():
                needs_context = asset.ticker_needs_context and written == asset.ticker
                forms[kind, " ".join(written.split())] = _Form(asset, kind, needs_context)
        # Per first character, the forms longest first: at any position the longest form wins
        # ("Bitcoin Cash" over "Bitcoin"). One group per branch: ``lastindex`` names the form.
        by_first: dict[str, list[tuple[str, str, _Form]]] = {}
        for (kind, written), form in forms.items():
            for first, rest in _branches(kind, written):
                by_first.setdefault(first, []).append((written, rest, form))
        self._groups: list[_Form] = []
        alternatives: list[str] = []
        for first in sorted(by_first):
            rests: list[str] = []
            for _, rest, branch_form in sorted(by_first[first], key=lambda b: (-len(b[0]), b[0])):
                rests.append(f"({rest})")
                self._groups.append(branch_form)
            alternatives.append(f"{re.escape(first)}(?:{'|'.join(rests)})")
        self._regex = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")

    def find(self, text: str) -> list[str]:
        """Canonical tickers mentioned in ``text``, in order of first occurrence, no duplicates."""
        matches = [self._match(m) for m in self._regex.finditer(text)]
        evidenced = {
            match.form.asset.ticker
            for i, match in enumerate(matches)
            if self._counts_alone(text, matches, i)
        }
        tickers: list[str] = []
        for match in matches:
            ticker = match.form.asset.ticker
            if ticker in evidenced and ticker not in tickers:
                tickers.append(ticker)
        return tickers

    def _match(self, match: re.Match[str]) -> _Match:
        return _Match(
            form=self._groups[(match.lastindex or 1) - 1],
            start=match.start(),
            end=match.end(),
            dollar=match.group().startswith("$"),
        )

    @staticmethod
    def _counts_alone(text: str, matches: Sequence[_Match], index: int) -> bool:
        """Whether this match is a mention by itself (a context ticker needs evidence)."""
        match = matches[index]
        if not match.form.needs_context or match.dollar:
            return True
        if text[match.start - 1 : match.start] == "(" and text[match.end : match.end + 1] == ")":
            return True
        if _NOUN_AFTER.match(text, match.end) or _PAIR_AFTER.match(text, match.end):
            return True
        neighbours = (
            (matches[index - 1], match) if index > 0 else None,
            (match, matches[index + 1]) if index + 1 < len(matches) else None,
        )
        return any(
            pair is not None and _LIST_SEPARATOR.fullmatch(text, pair[0].end, pair[1].start)
            for pair in neighbours
        )
