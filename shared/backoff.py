"""Capped exponential backoff with full jitter, the one retry delay every component uses."""

from __future__ import annotations

import random


def full_jitter_backoff(attempt: int, *, cap_s: float, base_s: float = 0.1) -> float:
    """A delay uniform in [0, min(cap, base * 2**attempt)] (AWS's "full jitter").

    Jitter spreads reconnecting clients apart; the cap keeps a long outage from growing the wait
    past what an operator would tolerate once the dependency is back.
    """
    return random.uniform(0.0, min(cap_s, base_s * 2.0 ** min(attempt, 30)))  # noqa: S311
