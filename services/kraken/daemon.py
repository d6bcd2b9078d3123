"""Entry point of ``cryptoviz-kraken``."""

from typing import NoReturn

from services.reserved import reserved_main


def main() -> NoReturn:
    reserved_main(
        "cryptoviz-kraken", "Kraken WebSocket v2 producer for rawticker, rawtrade, rawalert"
    )
