"""Settings of ``cryptoviz-scraper`` (on top of the common ones in ``shared.settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.scraper.sentiment import Label, parse_label_map
from shared import __version__
from shared.settings import Port, Settings

# Sites block anonymous or browser-impersonating clients first; a named bot with a contact URL
# is what their operators ask for, and what robots.txt rules are written against.
PROJECT_URL: Final = "https://example.invalid/cryptoviz"
USER_AGENT: Final = f"cryptoviz-scraper/{__version__} (+{PROJECT_URL})"
MIB: Final = 1024 * 1024


class ScraperSettings(Settings):
    http_port: Port = 9102

    # The sources file (TOML); unset means the list shipped with the package.
    scraper_sources: Path | None = None
    scraper_user_agent: str = Field(default=USER_AGENT, min_length=1)

    # Fetching
    scraper_timeout_s: float = Field(default=20.0, gt=0, le=300)
    scraper_connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    scraper_retries: int = Field(default=2, ge=0, le=10)
    scraper_retry_max_s: float = Field(default=30.0, gt=0)
    scraper_max_body_bytes: int = Field(default=5 * MIB, ge=1024)
    scraper_max_redirects: int = Field(default=5, ge=0, le=20)
    scraper_per_host_concurrency: int = Field(default=2, ge=1, le=32)
    scraper_max_connections: int = Field(default=32, ge=1)
    scraper_robots_ttl_s: float = Field(default=3600.0, ge=0, le=86_400)

    # The pipeline
    scraper_article_concurrency: int = Field(default=8, ge=1, le=128)
    scraper_max_entries_per_feed: int = Field(default=50, ge=1)
    scraper_max_text_chars: int = Field(default=100_000, ge=1_000)
    # An article whose page failed in a way that may pass (5xx, timeout) is tried again at the
    # next polls; after this many failures it is published with the feed's own text.
    scraper_page_attempts: int = Field(default=3, ge=1)
    # Dates further ahead than this are a site's time-zone bug: they are clamped to scrape time.
    scraper_future_tolerance_s: float = Field(default=300.0, ge=0)

    # Extraction (trafilatura, in one worker process)
    scraper_extract_timeout_s: float = Field(default=30.0, gt=0)
    scraper_extract_recycle: int = Field(default=500, ge=1)

    # Deduplication
    scraper_dedup: Literal["file", "postgres"] = "file"
    scraper_dedup_retention_days: float = Field(default=90.0, gt=0)

    # Sentiment: a transformers model id or local path; "lexicon" for the offline backend.
    sentiment_model: str = Field(default="ProsusAI/finbert", min_length=1)
    sentiment_batch_size: int = Field(default=16, ge=1, le=1024)
    # The model's raw labels to ours, for models whose labels are not self-explanatory:
    # "bullish=positive,bearish=negative,neutral=neutral". Empty: the sentiment module's defaults.
    sentiment_label_map: Annotated[dict[str, Label], NoDecode] = Field(default_factory=dict)

    @field_validator("sentiment_label_map", mode="before")
    @classmethod
    def _label_map(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_label_map(value)
        return value

    @field_validator("scraper_sources", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object) -> object:
        # An empty variable (a supervisord or unit template with nothing to fill) means the
        # packaged list, not a file named "".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("scraper_sources")
    @classmethod
    def _sources_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("does not name a readable file")
        return value

    @property
    def seen_file(self) -> Path:
        return self.data_dir / "scraper-seen.jsonl"

    @property
    def validators_file(self) -> Path:
        return self.data_dir / "scraper-feed-validators.json"
