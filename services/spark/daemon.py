"""Entry point of ``cryptoviz-spark <job>``."""

from typing import NoReturn

from services.reserved import reserved_main


def main() -> NoReturn:
    reserved_main("cryptoviz-spark", "spark-submit wrapper daemon for one Spark job")
