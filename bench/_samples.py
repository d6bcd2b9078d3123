"""Realistic payloads, one per topic: the seed's example shapes at the sizes production sees."""

from __future__ import annotations

from shared.envelope import (
    ArticleContent,
    Payload,
    RawAlert,
    RawArticle,
    RawTicker,
    RawTrade,
    Sentiment,
)

NOW = 1_732_465_123.456789

# A few paragraphs of press prose, with the non-ASCII punctuation real articles carry, repeated
# up to about 3 KB: the size of a scraped article body after boilerplate removal.
_PARAGRAPHS = (
    "Bitcoin climbed above $97,000 on Monday as spot ETF inflows resumed after a week of "
    "outflows, according to data compiled by analysts who track the funds\u2019 daily flows. "
    "Traders said the move was driven by short covering on offshore derivatives venues, "
    "where open interest had reached a record ahead of the options expiry on Friday.",
    "Ether lagged the broader market, trading near $3,350 — roughly 30% below its all-time "
    "high — while Solana and XRP posted double-digit weekly gains. “The rotation into large "
    "caps is still the dominant theme,” one desk head at a London-based market maker wrote "
    "in a note to clients, adding that funding rates remained elevated but not extreme.",
    "Regulators in Brussels published the final technical standards under MiCA, setting "
    "out how stablecoin issuers must hold reserves in the euro area. Exchanges serving "
    "European users have until the end of the year to comply; several said they would "
    "delist non-compliant tokens for customers in the EU rather than seek new licences.",
)


def _article_text(size: int = 3_000) -> str:
    parts: list[str] = []
    length = 0
    while length < size:
        paragraph = _PARAGRAPHS[len(parts) % len(_PARAGRAPHS)]
        parts.append(paragraph)
        length += len(paragraph) + 2
    return "\n\n".join(parts)[:size]


def article() -> RawArticle:
    return RawArticle(
        id="9f2c1e7a4b6d8e0f1a3c5e7b9d1f3a5c",
        title="Bitcoin tops $97,000 as ETF inflows return and shorts are squeezed",
        url="https://www.coindesk.com/markets/2024/11/24/bitcoin-tops-97000-as-etf-inflows-return",
        website="coindesk.com",
        summary=(
            "Bitcoin rose above $97,000 as spot ETF inflows resumed; ether lagged while "
            "Solana and XRP gained, and Brussels published MiCA's final stablecoin standards."
        ),
        content=ArticleContent(text=_article_text()),
        published_at=NOW - 1_800.0,
        scraped_at=NOW,
        tags=["markets", "bitcoin", "etf", "regulation"],
        sentiment=Sentiment(score=0.62, label="positive"),
        cryptocurrencies_mentioned=["BTC", "ETH", "SOL", "XRP"],
    )


def ticker() -> RawTicker:
    return RawTicker(
        pair="BTC/USD",
        last=97_123.4,
        bid=97_123.3,
        ask=97_123.4,
        volume_24h=4_312.87654321,
        timestamp=NOW,
        pct_change=2.37,
    )


def trade(sequence: int = 83_723_412) -> RawTrade:
    return RawTrade(
        pair="BTC/USD",
        price=97_123.4 + (sequence % 100) / 10,
        volume=0.00123456,
        timestamp=NOW + sequence / 1_000,
        side="b" if sequence % 2 else "s",
        trade_id=sequence,
    )


def alert() -> RawAlert:
    return RawAlert(
        pair="SOL/USD",
        type="price_spike",
        last=243.17,
        change=5.31,
        threshold=5.0,
        timestamp=NOW,
        window_s=300.0,
    )


def one_per_topic() -> dict[str, Payload]:
    """A payload for every topic, in the envelope's topic order."""
    return {payload.topic: payload for payload in (article(), ticker(), trade(), alert())}
