"""The sources file: the shipped default list, the format, and errors that name the problem."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.scraper.fake_site import main as fake_site_main
from services.scraper.settings import ScraperSettings
from services.scraper.sources import DEFAULT_POLL_INTERVAL_S, load_sources, parse_sources
from shared.settings import ConfigError, load_settings


def test_the_shipped_list_has_at_least_ten_real_feeds() -> None:
    sources = load_sources(None)
    assert "sources.toml" in sources.origin
    enabled = sources.enabled
    assert len(enabled) >= 10
    names = [source.name for source in enabled]
    assert len(set(names)) == len(names)
    assert {"CoinDesk", "Cointelegraph", "Decrypt", "The Block", "Bitcoin Magazine"} <= set(names)
    for source in enabled:
        assert urlsplit(source.url).scheme == "https"
        assert 60 <= source.poll_interval_s <= 3600
    coindesk = next(s for s in enabled if s.name == "CoinDesk")
    assert coindesk.url == "https://www.coindesk.com/arc/outboundfeeds/rss/"


def test_a_file_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        """
[defaults]
poll_interval_s = 120

[[source]]
name = "One"
url = "https://one.example/feed"

[[source]]
name = "Two"
url = "http://two.example/rss.xml"
poll_interval_s = 30
enabled = false
"""
    )
    sources = load_sources(path)
    assert sources.origin == str(path)
    assert [(s.name, s.poll_interval_s, s.enabled) for s in sources.sources] == [
        ("One", 120.0, True),
        ("Two", 30.0, False),
    ]
    assert [s.name for s in sources.enabled] == ["One"]


def test_the_default_interval_applies_without_a_defaults_table() -> None:
    sources = parse_sources(b'[[source]]\nname = "A"\nurl = "https://a.example/f"\n', "x")
    assert sources.sources[0].poll_interval_s == DEFAULT_POLL_INTERVAL_S


ONE = '[[source]]\nname = "A"\nurl = "https://a.example/feed"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[source]\nname=", "not valid TOML"),
        ("", "no [[source]] entries"),
        ('[[source]]\nname = "A"\n', "source #1: Object missing required field `url`"),
        (ONE + '[[source]]\nname = "B"\nurl = "ftp://b.example/f"\n', "source #2 ('B'): url"),
        (ONE + '[[source]]\nname = "B"\nurl = "not a url"\n', "is not an http:// or https://"),
        (ONE + '[[source]]\nname = "a"\nurl = "https://b.example/f"\n', "name is used twice"),
        (ONE + '[[source]]\nname = " B"\nurl = "https://b.example/f"\n', "name must be"),
        (ONE.replace('"A"', '""'), "source #1 name: Expected `str` of length >= 1"),
        (ONE + "pol_interval_s = 60\n", "source #1: Object contains unknown field"),
        (ONE + "poll_interval_s = 0\n", "source #1 poll_interval_s: Expected `float` > 0.0"),
        (ONE + 'enabled = "yes"\n', "source #1 enabled: Expected `bool`"),
        (ONE + "enabled = false\n", "every source is disabled"),
        ("[defaults]\npoll = 3\n" + ONE, "defaults: Object contains unknown field `poll`"),
        ("[[sources]]\nname = 'A'\n", "unknown field `sources`"),
    ],
)
def test_errors_name_the_file_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sources(text.encode(), "/etc/cryptoviz/sources.toml")
    message = str(caught.value)
    assert message.startswith("sources file /etc/cryptoviz/sources.toml: ")
    assert problem in message


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_sources(tmp_path)  # a directory


def test_the_setting_must_name_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYPTOVIZ_SCRAPER_SOURCES", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as caught:
        load_settings(ScraperSettings)
    assert "CRYPTOVIZ_SCRAPER_SOURCES" in str(caught.value)
    assert "does not name a readable file" in str(caught.value)


def test_the_sentiment_label_map_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOVIZ_SENTIMENT_LABEL_MAP", "Bullish=positive, bearish=negative")
    settings = load_settings(ScraperSettings)
    assert settings.sentiment_label_map == {"bullish": "positive", "bearish": "negative"}
    monkeypatch.setenv("CRYPTOVIZ_SENTIMENT_LABEL_MAP", "bullish=good")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_SENTIMENT_LABEL_MAP"):
        load_settings(ScraperSettings)


def test_the_fake_site_prints_a_valid_sources_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert fake_site_main(["--print-sources", "--port", "8766", "--poll-interval", "30"]) == 0
    sources = parse_sources(capsys.readouterr().out.encode(), "(printed)")
    assert [s.name for s in sources.enabled] == [
        "Fake RSS",
        "Fake Atom",
        "Fake JSON",
        "Fake Broken",
        "Fake Missing",
    ]
    assert all(s.url.startswith("http://127.0.0.1:8766/feeds/") for s in sources.sources)
    assert all(s.poll_interval_s == 30 for s in sources.sources)


def test_an_empty_sources_setting_means_the_packaged_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRYPTOVIZ_SCRAPER_SOURCES", "")
    assert load_settings(ScraperSettings).scraper_sources is None
