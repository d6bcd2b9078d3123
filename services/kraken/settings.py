"""Settings of ``cryptoviz-kraken`` (on top of the common ones in ``shared.settings``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import Port, Settings

# Major USD pairs by volume on Kraken, in WS v2 symbols.
DEFAULT_PAIRS = (
    "BTC/USD",
    "ETH/USD",
    "SOL/USD",
    "XRP/USD",
    "ADA/USD",
    "DOGE/USD",
    "DOT/USD",
    "LTC/USD",
    "LINK/USD",
    "AVAX/USD",
)


class AlertOverride(BaseModel):
    """Per-pair alert settings; unset fields take the global ones."""

    threshold_pct: float | None = Field(default=None, gt=0)
    window_s: float | None = Field(default=None, gt=0)
    cooldown_s: float | None = Field(default=None, ge=0)


class KrakenSettings(Settings):
    http_port: Port = 9101
    kraken_url: str = "wss://ws.kraken.com/v2"
    # A comma list; v1 names (XBT/USD) are accepted and normalised to v2 (BTC/USD).
    kraken_pairs: Annotated[tuple[str, ...], NoDecode] = DEFAULT_PAIRS
    # Kraken sends a heartbeat every second on a subscribed connection: this much silence means
    # the connection is open but dead, and it is replaced.
    kraken_silence_timeout_s: float = Field(default=10.0, gt=0)
    kraken_connect_timeout_s: float = Field(default=10.0, gt=0)
    kraken_reconnect_max_s: float = Field(default=30.0, gt=0)
    kraken_max_frame_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    alert_threshold_pct: float = Field(default=2.0, gt=0)
    alert_window_s: float = Field(default=300.0, gt=0)
    alert_cooldown_s: float | None = Field(default=None, ge=0)
    # JSON: {"BTC/USD": {"threshold_pct": 1.5, "window_s": 60}}
    alert_overrides: dict[str, AlertOverride] = Field(default_factory=dict)

    @field_validator("kraken_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @field_validator("kraken_pairs", mode="before")
    @classmethod
    def _pair_list(cls, value: object) -> object:
        from services.kraken.protocol import normalise_pair  # noqa: PLC0415 - one home for it

        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        pairs = [normalise_pair(str(item).strip()) for item in items if str(item).strip()]
        if not pairs:
            raise ValueError("needs at least one pair, e.g. BTC/USD,ETH/USD")
        return tuple(dict.fromkeys(pairs))

    @field_validator("alert_overrides", mode="after")
    @classmethod
    def _override_pairs(cls, value: dict[str, AlertOverride]) -> dict[str, AlertOverride]:
        from services.kraken.protocol import normalise_pair  # noqa: PLC0415

        return {normalise_pair(pair): rule for pair, rule in value.items()}
