"""Entry point of ``cryptoviz-kraken``."""

from typing import NoReturn

from services.kraken.service import KrakenService
from services.kraken.settings import KrakenSettings
from shared.runtime import main as run_daemon


def main() -> NoReturn:
    run_daemon(
        KrakenService,
        KrakenSettings,
        prog="cryptoviz-kraken",
        description="Kraken WebSocket v2 producer: tickers to rawticker, trades to rawtrade, "
        "sharp moves to rawalert.",
    )
