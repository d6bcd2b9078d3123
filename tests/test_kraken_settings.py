"""Settings of cryptoviz-kraken: pairs in either naming, URLs, alert thresholds per pair."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry

from services.kraken.service import KrakenService
from services.kraken.settings import DEFAULT_PAIRS, KrakenSettings
from shared.settings import ConfigError, load_settings


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> KrakenSettings:
    for name in list(os.environ):
        if name.startswith("CRYPTOVIZ_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(KrakenSettings)


def test_defaults_are_major_usd_pairs_on_kraken_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(monkeypatch)
    assert loaded.kraken_pairs == DEFAULT_PAIRS
    assert "BTC/USD" in loaded.kraken_pairs
    assert loaded.kraken_url == "wss://ws.kraken.com/v2"
    assert loaded.http_port == 9101


def test_pairs_are_a_comma_list_normalised_to_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(monkeypatch, CRYPTOVIZ_KRAKEN_PAIRS=" xbt/usd, ETH/USD ,XDG/EUR,BTC/USD")
    assert loaded.kraken_pairs == ("BTC/USD", "ETH/USD", "DOGE/EUR")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CRYPTOVIZ_KRAKEN_PAIRS", "BTCUSD", "CRYPTOVIZ_KRAKEN_PAIRS"),
        ("CRYPTOVIZ_KRAKEN_PAIRS", " , ", "needs at least one pair"),
        ("CRYPTOVIZ_KRAKEN_URL", "https://ws.kraken.com/v2", "must be a ws:// or wss:// URL"),
        ("CRYPTOVIZ_ALERT_THRESHOLD_PCT", "0", "CRYPTOVIZ_ALERT_THRESHOLD_PCT"),
        ("CRYPTOVIZ_ALERT_OVERRIDES", '{"BTC/USD": {"threshold_pct": -1}}', "ALERT_OVERRIDES"),
        ("CRYPTOVIZ_ALERT_OVERRIDES", "not json", "CRYPTOVIZ_ALERT_OVERRIDES"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(monkeypatch, **{variable: value})


def test_per_pair_alert_overrides_reach_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(
        monkeypatch,
        CRYPTOVIZ_ALERT_THRESHOLD_PCT="2",
        CRYPTOVIZ_ALERT_WINDOW_S="300",
        CRYPTOVIZ_ALERT_OVERRIDES=(
            '{"xbt/usd": {"threshold_pct": 0.5}, "ETH/USD": {"window_s": 60}}'
        ),
    )
    detector = KrakenService(loaded, CollectorRegistry()).detector
    btc, eth, sol = (detector.rule_for(p) for p in ("BTC/USD", "ETH/USD", "SOL/USD"))
    assert (btc.threshold_pct, btc.window_s) == (0.5, 300)
    assert (eth.threshold_pct, eth.window_s) == (2, 60)
    assert (sol.threshold_pct, sol.window_s) == (2, 300)
