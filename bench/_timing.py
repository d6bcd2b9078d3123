"""Rates and percentiles: the two ways the benchmarks turn clock readings into figures."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

REPEATS = 3


def best_rate(operation: Callable[[], object], *, budget_s: float) -> float:
    """Calls per second of ``operation`` on this core: the best of 3 timed loops.

    The loop length is calibrated so the three loops together take about ``budget_s``; the best
    loop is reported because everything that slows one down (other processes, frequency
    scaling, a collection of the cyclic GC) is noise added to the operation's own cost.
    """
    target_s = budget_s / REPEATS
    iterations = _calibrate(operation, target_s)
    best_s = math.inf
    for _ in range(REPEATS):
        best_s = min(best_s, _time_loop(operation, iterations))
    return iterations / best_s


def _calibrate(operation: Callable[[], object], target_s: float) -> int:
    """The number of iterations one loop needs to last about ``target_s``."""
    iterations = 1
    while True:
        elapsed = _time_loop(operation, iterations)
        # Scale up from a loop long enough to time reliably, not from a single call.
        if elapsed >= min(0.02, target_s / 5):
            return max(1, round(iterations * target_s / elapsed))
        iterations *= 10


def _time_loop(operation: Callable[[], object], iterations: int) -> float:
    started = time.perf_counter()
    for _ in range(iterations):
        operation()
    return time.perf_counter() - started


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples (``fraction`` 0.99 for p99)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
