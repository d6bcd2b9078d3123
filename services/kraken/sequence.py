"""Trade-id bookkeeping: Kraken v2 numbers each pair's trades in sequence.

After a reconnect the trade snapshot repeats recent trades: those are duplicates and must not
reach Kafka twice. A jump in the sequence means trades were missed (while disconnected, or
dropped upstream): that is counted and logged, since the missed trades cannot be fetched from the
WebSocket API. The last id per pair is saved at stop and loaded at start, so a restart of the
daemon does not republish the snapshot either.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    #: trades skipped by the sequence just before this one (0 when contiguous)
    missed: int = 0


DUPLICATE = Verdict(accept=False)
NEXT = Verdict(accept=True)


class TradeSequence:
    def __init__(self, state_path: Path | None = None) -> None:
        self._path = state_path
        self._last: dict[str, int] = {}

    def check(self, pair: str, trade_id: int) -> Verdict:
        """Judge ``trade_id`` against the last accepted one of ``pair``, and remember it."""
        last = self._last.get(pair)
        if last is None:
            self._last[pair] = trade_id
            return NEXT
        if trade_id <= last:
            return DUPLICATE
        self._last[pair] = trade_id
        missed = trade_id - last - 1
        return NEXT if missed == 0 else Verdict(accept=True, missed=missed)

    def last(self, pair: str) -> int | None:
        return self._last.get(pair)

    def load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
            self._last = {str(pair): int(value) for pair, value in data.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            # A corrupt state file costs at most one snapshot of duplicates: start afresh.
            self._last = {}

    def save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._last, sort_keys=True))
        os.replace(temporary, self._path)  # atomic: a crash never leaves half a file
