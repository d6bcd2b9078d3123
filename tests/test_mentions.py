"""Asset mentions: canonical tickers from names, tickers and aliases, with word boundaries.

Each test states one rule of ``services/scraper/mentions.py`` on plain sentences, with the exact
list expected (order of first occurrence, no duplicates).
"""

from __future__ import annotations

import re
import time

import pytest

from services.scraper.mentions import (
    Asset,
    AssetListError,
    MentionFinder,
    load_assets,
    parse_assets,
)

# The base assets of the Kraken WS v2 pairs the pipeline trades (``BTC/USD``): mentions must use
# exactly this spelling, or sentiment does not join prices.
KRAKEN_STYLE = re.compile(r"^[A-Z0-9]{2,12}$")


@pytest.fixture(scope="module")
def finder() -> MentionFinder:
    return MentionFinder()


def find(finder: MentionFinder, text: str) -> list[str]:
    return finder.find(text)


# --- the shipped asset list ---------------------------------------------------------------------


def test_shipped_list_has_the_major_assets_with_kraken_tickers() -> None:
    assets = load_assets()
    tickers = [asset.ticker for asset in assets]
    assert len(assets) >= 40
    assert len(set(tickers)) == len(tickers)
    assert all(KRAKEN_STYLE.match(ticker) for ticker in tickers)
    major = "BTC ETH SOL XRP ADA DOGE DOT LTC LINK AVAX USDT USDC BNB TRX POL SHIB XLM ATOM UNI"
    major += " NEAR APT ARB OP FIL ICP ETC BCH XMR AAVE MKR SUI TON PEPE"
    assert set(major.split()) <= set(tickers)
    # Kraken v2 spellings, not v1's.
    assert "XBT" not in tickers
    assert "XDG" not in tickers


def test_load_assets_is_cached() -> None:
    assert load_assets() is load_assets()


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bitcoin tops $100,000", ["BTC"]),
        ("bitcoin's rally continues", ["BTC"]),
        ("BITCOIN HITS RECORD", ["BTC"]),
        ("Investors bought 10 bitcoins", ["BTC"]),
        ("Bitcoin-backed loans grow", ["BTC"]),
        ("Ethereum and Solana lead", ["ETH", "SOL"]),
        ("Cardano, Polkadot and Litecoin slip", ["ADA", "DOT", "LTC"]),
        ("Dogecoin jumps after the tweet", ["DOGE"]),
        ("Chainlink oracles go live", ["LINK"]),
        ("Uniswap votes on fees", ["UNI"]),
        ("Aptos and Arbitrum see inflows", ["APT", "ARB"]),
        ("Filecoin, Monero, Tezos", ["FIL", "XMR", "XTZ"]),
        ("NEAR Protocol ships sharding", ["NEAR"]),
        ("Toncoin rises on Telegram news", ["TON"]),
    ],
)
def test_names_are_found_case_insensitively(
    finder: MentionFinder, text: str, expected: list[str]
) -> None:
    assert find(finder, text) == expected


def test_bitcoin_cash_is_bch_not_btc(finder: MentionFinder) -> None:
    assert find(finder, "Bitcoin Cash forks again") == ["BCH"]
    assert find(finder, "BITCOIN CASH forks again") == ["BCH"]
    assert find(finder, "Bitcoin\n  Cash forks again") == ["BCH"]


def test_the_longest_name_wins(finder: MentionFinder) -> None:
    assert find(finder, "Ethereum Classic hard fork") == ["ETC"]
    assert find(finder, "Wrapped Bitcoin supply shrinks") == ["WBTC"]
    assert find(finder, "Bitcoin SV is not Bitcoin") == ["BSV", "BTC"]


def test_bitcoin_and_bitcoin_cash_are_both_found_in_order(finder: MentionFinder) -> None:
    assert find(finder, "Bitcoin rose while Bitcoin Cash fell") == ["BTC", "BCH"]
    assert find(finder, "Bitcoin Cash fell while Bitcoin rose") == ["BCH", "BTC"]


def test_ether_is_eth(finder: MentionFinder) -> None:
    assert find(finder, "Ether slides below $3,000") == ["ETH"]
    assert find(finder, "staked ether") == ["ETH"]


# --- proper names: exact case -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Avalanche validators upgrade", ["AVAX"]),
        ("an avalanche of sell orders", []),
        ("Polygon cuts fees", ["POL"]),
        ("a polygon mesh", []),
        ("Ripple wins in court", ["XRP"]),
        ("a ripple effect on markets", []),
        ("Tether mints $1 billion", ["USDT"]),
        ("tether the device", []),
        ("Stellar and Cosmos", ["XLM", "ATOM"]),
        ("a stellar quarter in the cosmos", []),
        ("Sui gains users", ["SUI"]),
        ("a sui generis case", []),
        ("Optimism ships an upgrade", ["OP"]),
        ("optimism returns to markets", []),
        ("Internet Computer nodes", ["ICP"]),
        ("an internet computer", []),
        ("Shiba Inu burns tokens", ["SHIB"]),
        ("my shiba inu sleeps", []),
    ],
)
def test_proper_names_match_only_as_written(
    finder: MentionFinder, text: str, expected: list[str]
) -> None:
    assert find(finder, text) == expected


# --- tickers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTC and ETH rise", ["BTC", "ETH"]),
        ("$SOL pumps", ["SOL"]),
        ("$BTC, $ETH", ["BTC", "ETH"]),
        ("BTC's dominance", ["BTC"]),
        ("BTC-USD and ETH/EUR", ["BTC", "ETH"]),
        ("XRP, ADA, LTC", ["XRP", "ADA", "LTC"]),
        ("USDT and USDC supply", ["USDT", "USDC"]),
        ("BNB, TRX, SHIB, XLM", ["BNB", "TRX", "SHIB", "XLM"]),
        ("PEPE and SUI", ["PEPE", "SUI"]),
        ("(SOL)", ["SOL"]),
    ],
)
def test_tickers_are_found_in_upper_case(
    finder: MentionFinder, text: str, expected: list[str]
) -> None:
    assert find(finder, text) == expected


def test_tickers_are_case_sensitive(finder: MentionFinder) -> None:
    assert find(finder, "btc eth sol Sol Btc") == []


def test_xbt_is_btc_and_xdg_is_doge(finder: MentionFinder) -> None:
    assert find(finder, "XBT/USD trades flat") == ["BTC"]
    assert find(finder, "XDG volume doubles") == ["DOGE"]
    assert find(finder, "XBT and BTC") == ["BTC"]


def test_matic_is_pol(finder: MentionFinder) -> None:
    assert find(finder, "MATIC holders migrate") == ["POL"]
    assert find(finder, "Polygon (MATIC) becomes POL") == ["POL"]


# --- never inside words -------------------------------------------------------------------------


def test_eth_is_not_found_in_method(finder: MentionFinder) -> None:
    assert find(finder, "A new method for the analysis") == []
    assert find(finder, "A NEW METHOD") == []


def test_sol_is_not_found_in_solution(finder: MentionFinder) -> None:
    assert find(finder, "The solution is simple") == []
    assert find(finder, "SOLUTION") == []


@pytest.mark.parametrize(
    "text",
    [
        "Ethernet cables",
        "ETHERNET",
        "Companies ADAPT quickly",
        "dotted lines",
        "Consolidation continues",
        "A btcpay server",
        "stETH and wBTC",  # other assets, not ETH or BTC
        "BTCUSD and ETH2",
        "the bitcoiners",
        "Unlinked accounts",
        "Bitcoinist reports",
    ],
)
def test_forms_are_never_found_inside_words(finder: MentionFinder, text: str) -> None:
    assert find(finder, text) == []


# --- tickers that are also words ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Prices hover near the top of the range",
        "Click the link below",
        "BITCOIN HOVERS NEAR RECORD AS ETF DEMAND GROWS",
        "LINK rallied 10%",
        "DOGE cuts federal spending",
        "OP-ED: why regulation matters",
        "North Korean APT group suspected",
        "Fees, taxes, ETC",
        "DOT-COM BUBBLE COMPARISONS",
        "A TON OF NEW USERS",
        "UNI students protest",
        "THE HYPE IS REAL",
    ],
)
def test_word_like_tickers_need_evidence(finder: MentionFinder, text: str) -> None:
    expected = ["BTC"] if "BITCOIN" in text else []
    assert find(finder, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$LINK breaks out", ["LINK"]),
        ("Chainlink (LINK) rose 10%", ["LINK"]),
        ("Dogecoin (DOGE) and $DOGE", ["DOGE"]),
        ("Aptos (APT) unlock", ["APT"]),
        ("NEAR token holders vote", ["NEAR"]),
        ("The DOGE price jumps", ["DOGE"]),
        ("UNI staking goes live", ["UNI"]),
        ("LINK/USD and DOT-EUR", ["LINK", "DOT"]),
        ("DOT/USDT", ["DOT", "USDT"]),  # the quote is a mention too
        ("BTC, ETH and LINK rallied", ["BTC", "ETH", "LINK"]),
        ("BTC, ETH, and DOT", ["BTC", "ETH", "DOT"]),
        ("NEAR, OP & UNI", ["NEAR", "OP", "UNI"]),
        ("Bitcoin or DOGE?", ["BTC", "DOGE"]),
        # The asset named elsewhere: the ticker's own position gives the order.
        ("LINK jumped after Chainlink announced staking", ["LINK"]),
        ("SOL and then LINK moved; Chainlink led", ["SOL", "LINK"]),
    ],
)
def test_word_like_tickers_count_with_evidence(
    finder: MentionFinder, text: str, expected: list[str]
) -> None:
    assert find(finder, text) == expected


# --- order and duplicates -----------------------------------------------------------------------


def test_tickers_come_in_order_of_first_occurrence_without_duplicates(
    finder: MentionFinder,
) -> None:
    text = (
        "Solana and Bitcoin rose; SOL led. Ether lagged while bitcoin's dominance grew, "
        "and ETH, $SOL and XBT all traded higher."
    )
    assert find(finder, text) == ["SOL", "BTC", "ETH"]


def test_empty_and_irrelevant_text(finder: MentionFinder) -> None:
    assert find(finder, "") == []
    assert find(finder, "The central bank held rates steady.") == []


def test_a_realistic_article(finder: MentionFinder) -> None:
    article = (
        "Bitcoin (BTC) climbed 4% on Tuesday while Ether traded flat near $3,100. "
        "Solana's SOL outperformed, and Chainlink's LINK token added 6%. Analysts said the method "
        "behind the solution was sound. Meanwhile, DOGE officials in Washington met near the "
        "Capitol, and Bitcoin Cash slipped 2%."
    )
    assert find(finder, article) == ["BTC", "ETH", "SOL", "LINK", "BCH"]


def test_finding_mentions_is_fast(finder: MentionFinder) -> None:
    article = (
        "Bitcoin (BTC) climbed while Ether traded flat. The method behind the solution was "
        "sound, analysts said, and Chainlink (LINK) added 6% as markets moved near highs. "
    ) * 400  # about 60 kB
    started = time.perf_counter()
    for _ in range(20):
        finder.find(article)
    elapsed = (time.perf_counter() - started) / 20
    print(f"mentions: {elapsed * 1000:.2f} ms per {len(article):,}-character article")


# --- custom lists and validation ----------------------------------------------------------------


def test_a_custom_asset_list() -> None:
    finder = MentionFinder(
        [
            Asset("BTC", names=("Bitcoin",), aliases=("XBT",)),
            Asset("FOO", names=(), aliases=(), proper_names=("Foo",), ticker_needs_context=True),
        ]
    )
    assert finder.find("Bitcoin and Foo, FOO") == ["BTC", "FOO"]
    assert finder.find("FOO fighters") == []
    assert finder.find("ETH") == []


def test_an_asset_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        MentionFinder([Asset("BTC", (), ()), Asset("BTC", (), ())])


def test_a_form_owned_by_two_assets_is_refused() -> None:
    with pytest.raises(ValueError, match="'Bitcoin' is listed for both BTC and BCH"):
        MentionFinder([Asset("BTC", ("Bitcoin",), ()), Asset("BCH", ("Bitcoin",), ())])
    # A case-insensitive name equal to another asset's ticker would make the ticker ambiguous.
    with pytest.raises(ValueError, match="name 'sol' of SOLANA also matches a form of SOL"):
        MentionFinder([Asset("SOL", (), ()), Asset("SOLANA", ("sol",), ())])


def test_parse_assets_reads_the_documented_fields() -> None:
    assets = parse_assets(
        """
        [[asset]]
        ticker = "ETH"
        names = ["Ethereum"]
        aliases = ["ether"]

        [[asset]]
        ticker = "NEAR"
        proper_names = ["NEAR Protocol"]
        ticker_needs_context = true
        """
    )
    assert assets == (
        Asset("ETH", names=("Ethereum",), aliases=("ether",)),
        Asset(
            "NEAR", names=(), aliases=(), proper_names=("NEAR Protocol",), ticker_needs_context=True
        ),
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[asset]]\nticker = "BTC"\nnmes = ["Bitcoin"]',
            r"asset #1 \(BTC\): unknown keys \['nmes'\]",
        ),
        ('[[asset]]\nticker = "btc"', "not 2 to 12 upper-case letters"),
        ('[[asset]]\nnames = ["Bitcoin"]', "ticker must be a string"),
        ('[[asset]]\nticker = "BTC"\nnames = "Bitcoin"', "names must be a list of strings"),
        ('[[asset]]\nticker = "BTC"\nticker_needs_context = "yes"', "must be true or false"),
        ('[[asset]]\nticker = "BTC"\nnames = [" Bitcoin"]', "must start with a word character"),
        ('[[coin]]\nticker = "BTC"', "unknown top-level keys"),
        ("", "no \\[\\[asset\\]\\] entries"),
        ("[[asset]\n", "assets.toml"),
    ],
)
def test_a_malformed_asset_list_fails_loudly(toml: str, message: str) -> None:
    with pytest.raises(AssetListError, match=message):
        parse_assets(toml)
