"""Threshold detection on trades: the ``rawalert`` producer's brain.

An :class:`AlertDetector` is fed every trade (pair, price, event time) and returns a
:class:`~shared.envelope.RawAlert` when a trade completes a move of at least
``threshold_pct`` percent within the last ``window_s`` seconds of event time. It works on trades,
not on successive tickers: a move that happens and reverts between two ticker updates is still seen.
It does no I/O and keeps no clock of its own, so replaying recorded trades gives the same alerts.

Semantics, per pair (each pair has its own state; pairs never influence each other):

- **Window.** The points ``(time, price)`` of the last ``window_s`` seconds of event time, both
  ends included: a point at ``newest - window_s`` is still in. Two monotonic deques give the
  window's minimum and maximum in O(1) amortised per trade.
- **Memory bound.** At most ``max_points_per_pair`` points are kept. When the window holds more
  trades than that, the oldest are evicted first, so on a busy pair the window is *shorter* than
  ``window_s`` (4096 points over a 60 s window covers about 68 trades a second). The monotonic
  deques only ever hold points of the window, so they are bounded by the same number.
- **Detection.** With ``low`` and ``high`` the window's minimum and maximum (the current trade
  included): ``(price - low) / low * 100 >= threshold_pct`` is a ``price_spike``,
  ``(price - high) / high * 100 <= -threshold_pct`` is a ``price_drop``. The alert's ``change`` is
  that percent rounded to 4 decimals (positive for a spike, negative for a drop), ``last`` the
  trade's price, ``timestamp`` the trade's own event time, ``threshold`` and ``window_s`` the rule
  that fired.
- **One move, one alert.** An alert restarts the window at the alerting trade: the move's reference
  is consumed, and an alert in the opposite direction needs a full threshold move inside the new
  window, which starts at the alert price (a pull-back of less than the threshold never alerts).
  For ``cooldown_s`` seconds of event time after an alert (``None``: ``window_s``), further
  crossings in the same direction are not reported but still consume their reference (that side
  of the window restarts at the crossing trade). So a spike of any size gives one alert, and a
  steady climb gives at most one alert per cooldown period, each for a fresh threshold move.
- **Out of order.** A trade older than the pair's newest event time minus ``window_s`` is ignored
  (``None``): its move is over. A less late trade is accepted *as if it happened at the newest
  time*: the window stays ordered, window expiry and cooldowns run on the newest event time, and
  only the alert's ``timestamp`` carries the trade's own time.
- **Bad input.** A non-finite or non-positive price, or a non-finite or non-positive timestamp, is
  ignored (``None``) and leaves no state behind. Upstream validation rejects these already; the
  detector must not let one poison a window. A move too large to express as a finite percent (a
  ratio above ~1e306) is a discontinuity, not a spike: the window restarts there without an alert.

Rules are chosen per pair at its first trade: the override for that exact pair string, else the
default. Pair spelling (``XBT/USD`` versus ``BTC/USD``) is normalised by the caller, before this.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from shared.envelope import RawAlert

DEFAULT_MAX_POINTS_PER_PAIR: Final = 4096

AlertType = Literal["price_spike", "price_drop"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """When a pair's move is an alert: ``threshold_pct`` percent within ``window_s`` seconds."""

    threshold_pct: float  # > 0, e.g. 2.0 means a 2 % move
    window_s: float  # > 0, sliding window length in seconds (event time)
    cooldown_s: float | None = None  # None: defaults to window_s

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold_pct) and self.threshold_pct > 0):
            raise ValueError(f"threshold_pct must be a positive number, got {self.threshold_pct}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s}")
        if self.cooldown_s is not None and not (
            math.isfinite(self.cooldown_s) and self.cooldown_s >= 0
        ):
            raise ValueError(
                f"cooldown_s must be a non-negative number of seconds, got {self.cooldown_s}"
            )

    @property
    def effective_cooldown_s(self) -> float:
        return self.window_s if self.cooldown_s is None else self.cooldown_s


class _PairWindow:
    """One pair's sliding window, its monotonic min/max deques and its cooldowns."""

    __slots__ = (
        "_cooldown_s",
        "_highs",
        "_last_alert",
        "_lows",
        "_max_points",
        "_newest",
        "_next_seq",
        "_points",
        "rule",
    )

    def __init__(self, rule: AlertRule, max_points: int) -> None:
        self.rule = rule
        self._cooldown_s = rule.effective_cooldown_s
        self._max_points = max_points
        # (seq, time): the window's order; seq ties the monotonic deques' entries to it, so
        # evicting a point from the window is "drop entries older than the first seq".
        self._points: deque[tuple[int, float]] = deque()
        # (seq, price): prices increasing from the front (lows) or decreasing (highs), so the
        # front is the window's minimum or maximum.
        self._lows: deque[tuple[int, float]] = deque()
        self._highs: deque[tuple[int, float]] = deque()
        self._next_seq = 0
        self._newest = -math.inf
        self._last_alert: dict[AlertType, float] = {}

    def __len__(self) -> int:
        return len(self._points)

    def observe(self, pair: str, price: float, timestamp: float) -> RawAlert | None:
        rule = self.rule
        if timestamp < self._newest - rule.window_s:
            return None
        # A late trade within the window counts as happening now: the window stays sorted by
        # time, and expiry and cooldowns never run backwards.
        now = max(timestamp, self._newest)
        self._newest = now

        seq = self._admit(now, price)
        lows, highs = self._lows, self._highs
        low, high = lows[0][1], highs[0][1]
        rise = (price - low) / low * 100.0
        if not math.isfinite(rise):
            self._restart(seq, now, price)
            return None
        if rise >= rule.threshold_pct:
            if self._cooling("price_spike", now):
                _rebase(lows, seq, price)
            else:
                return self._alert(
                    pair, "price_spike", rise, seq=seq, now=now, price=price, timestamp=timestamp
                )
        # A fall is at most -100 %: always finite.
        fall = (price - high) / high * 100.0
        if fall <= -rule.threshold_pct:
            if self._cooling("price_drop", now):
                _rebase(highs, seq, price)
            else:
                return self._alert(
                    pair, "price_drop", fall, seq=seq, now=now, price=price, timestamp=timestamp
                )
        return None

    def _admit(self, now: float, price: float) -> int:
        """Slide the window to ``now``, append the trade, and return its sequence number."""
        points = self._points
        horizon = now - self.rule.window_s
        while points and points[0][1] < horizon:
            points.popleft()
        if len(points) >= self._max_points:
            points.popleft()
        seq = self._next_seq
        self._next_seq += 1
        points.append((seq, now))
        first = points[0][0]
        _push(self._lows, seq, price, first, keep=operator.lt)
        _push(self._highs, seq, price, first, keep=operator.gt)
        return seq

    def _cooling(self, kind: AlertType, now: float) -> bool:
        last = self._last_alert.get(kind)
        return last is not None and now < last + self._cooldown_s

    def _restart(self, seq: int, now: float, price: float) -> None:
        self._points.clear()
        self._points.append((seq, now))
        _rebase(self._lows, seq, price)
        _rebase(self._highs, seq, price)

    def _alert(
        self,
        pair: str,
        kind: AlertType,
        change: float,
        *,
        seq: int,
        now: float,
        price: float,
        timestamp: float,
    ) -> RawAlert:
        self._restart(seq, now, price)
        self._last_alert[kind] = now
        return RawAlert(
            pair=pair,
            type=kind,
            last=price,
            change=round(change, 4),
            threshold=self.rule.threshold_pct,
            timestamp=timestamp,
            window_s=self.rule.window_s,
        )


def _push(
    extremes: deque[tuple[int, float]],
    seq: int,
    price: float,
    first: int,
    *,
    keep: Callable[[float, float], bool],
) -> None:
    """Append to a monotonic deque: drop entries this price dominates, then those out of the window.

    ``keep(older, price)`` says whether an older entry can still be the extreme: a lower price
    for the lows, a higher one for the highs. Equal prices go: the newer one outlives them.
    """
    while extremes and not keep(extremes[-1][1], price):
        extremes.pop()
    extremes.append((seq, price))
    # Never empties: the entry just appended is in the window.
    while extremes[0][0] < first:
        extremes.popleft()


def _rebase(extremes: deque[tuple[int, float]], seq: int, price: float) -> None:
    """Restart one side of the window at this trade: its reference is consumed."""
    extremes.clear()
    extremes.append((seq, price))


class AlertDetector:
    """Per-pair threshold detection over a sliding window of trades (see the module docstring)."""

    def __init__(
        self,
        default: AlertRule,
        overrides: Mapping[str, AlertRule] | None = None,
        *,
        max_points_per_pair: int = DEFAULT_MAX_POINTS_PER_PAIR,
    ) -> None:
        # One point is only the current trade: nothing to compare it with, so no alert ever.
        if max_points_per_pair < 2:
            raise ValueError(f"max_points_per_pair must be at least 2, got {max_points_per_pair}")
        self._default = default
        self._overrides = dict(overrides or {})
        self._max_points = max_points_per_pair
        self._windows: dict[str, _PairWindow] = {}

    def rule_for(self, pair: str) -> AlertRule:
        return self._overrides.get(pair, self._default)

    def observe(self, pair: str, price: float, timestamp: float) -> RawAlert | None:
        """Feed one trade (event time, epoch seconds).

        Returns an alert when this trade completes a move, else ``None``.
        """
        if not (math.isfinite(price) and price > 0 and math.isfinite(timestamp) and timestamp > 0):
            return None
        window = self._windows.get(pair)
        if window is None:
            window = self._windows[pair] = _PairWindow(self.rule_for(pair), self._max_points)
        return window.observe(pair, price, timestamp)

    def pairs(self) -> int:
        """How many pairs have state."""
        return len(self._windows)

    def points(self, pair: str) -> int:
        """How many window points are held for ``pair`` (0 for a pair never seen)."""
        window = self._windows.get(pair)
        return 0 if window is None else len(window)
