"""Entry point of ``cryptoviz-scraper``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from prometheus_client import CollectorRegistry

from services.scraper.service import ScraperService
from services.scraper.settings import ScraperSettings
from shared.runtime import build_parser
from shared.runtime import main as run_daemon

PROG = "cryptoviz-scraper"
DESCRIPTION = (
    "Crypto news scraper: polls the sources' feeds (RSS, Atom, JSON Feed), extracts each new "
    "article, scores its sentiment and publishes it to rawarticle, once."
)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser(PROG, DESCRIPTION, ScraperSettings)
    parser.add_argument(
        "--once",
        action="store_true",
        help="poll every enabled source once, publish what is new, then exit 0 "
        "(for cron-style runs and checks)",
    )
    # --once is how to run, not configuration: a flag only, never an environment variable.
    once = parser.parse_args(argv).once

    def service(settings: ScraperSettings, registry: CollectorRegistry) -> ScraperService:
        return ScraperService(settings, registry, once=once)

    run_daemon(
        service,
        ScraperSettings,
        prog=PROG,
        description=DESCRIPTION,
        argv=argv,
        parser=parser,
    )
