"""Settings only the operations CLI reads (on top of the common ones in ``shared.settings``)."""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.kraken.settings import KrakenSettings
from services.scraper.settings import ScraperSettings
from shared.settings import Settings


def _default_port(settings: type[Settings]) -> int:
    return int(settings.model_fields["http_port"].default)


# Where each daemon serves /metrics, /healthz and /readyz by default: read from the daemons' own
# settings, the one home of their CRYPTOVIZ_HTTP_PORT defaults. The Spark wrapper has no settings
# class yet; its ports are those of deploy/ and supervisord.conf until it does.
DEFAULT_HEALTH_DAEMONS: Final = {
    "kraken": f"http://127.0.0.1:{_default_port(KrakenSettings)}",
    "scraper": f"http://127.0.0.1:{_default_port(ScraperSettings)}",
    "spark-ingestion": "http://127.0.0.1:9103",
    "spark-analytics": "http://127.0.0.1:9104",
}


class OpsSettings(Settings):
    # CRYPTOVIZ_HEALTH_DAEMONS: comma-separated ``name=url`` pairs; `cryptoviz health` asks each
    # url for /readyz. Empty: no daemon is checked.
    health_daemons: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_HEALTH_DAEMONS)
    )

    @field_validator("health_daemons", mode="before")
    @classmethod
    def _name_url_pairs(cls, value: Any) -> dict[str, str]:
        items = (
            [f"{name}={url}" for name, url in value.items()]
            if isinstance(value, dict)
            else str(value).split(",")
        )
        daemons: dict[str, str] = {}
        for item in items:
            if not item.strip():
                continue
            name, sep, url = (part.strip() for part in item.partition("="))
            if not sep or not name or not url:
                raise ValueError(f"{item.strip()!r} is not name=url")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{name}: {url!r} is not an http:// or https:// URL")
            if name in daemons:
                raise ValueError(f"daemon {name!r} is listed twice")
            daemons[name] = url.rstrip("/")
        return daemons
