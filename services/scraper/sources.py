"""The news sources the scraper polls, read from a TOML file.

``CRYPTOVIZ_SCRAPER_SOURCES`` names the file; unset, the list shipped with the package
(``services/scraper/sources.toml``) is used. The format::

    [defaults]                 # optional
    poll_interval_s = 300

    [[source]]
    name = "CoinDesk"          # the rawarticle key (``website``); unique
    url = "https://www.coindesk.com/arc/outboundfeeds/rss/"   # RSS, Atom or JSON Feed
    poll_interval_s = 180      # optional, else the default
    enabled = true             # optional

Unknown keys are errors, not ignored: a typo (``pol_interval_s``) would otherwise silently poll
at the default rate. Every problem raises :class:`ConfigError` naming the file and the entry.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

import msgspec

from shared.settings import ConfigError

DEFAULT_RESOURCE: Final = "sources.toml"
DEFAULT_POLL_INTERVAL_S: Final = 300.0
# Names become Kafka keys and metric labels: short, printable.
MAX_NAME_LENGTH: Final = 100

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
_Interval = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class _SourceEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: _Name
    url: Annotated[str, msgspec.Meta(min_length=1)]
    poll_interval_s: _Interval | None = None
    enabled: bool = True


class _Defaults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    poll_interval_s: _Interval = DEFAULT_POLL_INTERVAL_S


class _SourcesFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    defaults: _Defaults = msgspec.field(default_factory=_Defaults)
    source: list[_SourceEntry] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Source:
    """One feed to poll. ``name`` is the record key and the ``source`` label of metrics."""

    name: str
    url: str
    poll_interval_s: float
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class SourceList:
    """The parsed file: where it came from (for logs and errors) and its sources, in order."""

    origin: str
    sources: tuple[Source, ...]

    @property
    def enabled(self) -> tuple[Source, ...]:
        return tuple(source for source in self.sources if source.enabled)


def parse_sources(data: bytes, origin: str) -> SourceList:
    """Parse a sources file's bytes; ``origin`` names the file in error messages."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"sources file {origin}: {problem}")

    try:
        parsed = msgspec.toml.decode(data, type=_SourcesFile)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.source[2].url`": the entry index is 0-based, say it 1-based.
        raise fail(_humanise(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise fail(f"not valid TOML: {exc}") from None
    if not parsed.source:
        raise fail("no [[source]] entries")
    sources: list[Source] = []
    seen: set[str] = set()
    for number, entry in enumerate(parsed.source, start=1):
        name = entry.name.strip()
        where = f"source #{number} ({name!r})" if name else f"source #{number}"
        if not name or name != entry.name or any(ord(ch) < 32 for ch in name):
            raise fail(f"{where}: name must be non-blank, without surrounding spaces or controls")
        if name.casefold() in seen:
            raise fail(f"{where}: name is used twice (names are record keys and must be unique)")
        seen.add(name.casefold())
        url = urlsplit(entry.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise fail(f"{where}: url {entry.url!r} is not an http:// or https:// URL")
        interval = entry.poll_interval_s or parsed.defaults.poll_interval_s
        sources.append(Source(name, entry.url, interval, entry.enabled))
    result = SourceList(origin, tuple(sources))
    if not result.enabled:
        raise fail("every source is disabled; enable at least one")
    return result


def _humanise(message: str) -> str:
    head, sep, path = message.partition(" - at `$")
    if not sep:
        return message
    path = path.rstrip("`")
    if path.startswith(".source[") and "]" in path:
        index, _, rest = path.removeprefix(".source[").partition("]")
        if index.isdigit():
            return f"source #{int(index) + 1}{' ' + rest.lstrip('.') if rest else ''}: {head}"
    return f"{path.lstrip('.') or 'top level'}: {head}"


def load_sources(path: Path | None) -> SourceList:
    """The sources in ``path``, or the packaged default list when ``path`` is None."""
    if path is None:
        resource = importlib.resources.files("services.scraper").joinpath(DEFAULT_RESOURCE)
        return parse_sources(resource.read_bytes(), f"(packaged) {DEFAULT_RESOURCE}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"sources file {path}: cannot read it ({exc.strerror})") from None
    return parse_sources(data, str(path))
