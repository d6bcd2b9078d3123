"""Entry point of ``cryptoviz-scraper``."""

from typing import NoReturn

from services.reserved import reserved_main


def main() -> NoReturn:
    reserved_main("cryptoviz-scraper", "Crypto news scraper producing rawarticle")
