"""Threshold alerts: what a scripted price path gives, and what it must not give."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kraken.alerts import AlertDetector, AlertRule
from shared.envelope import RawAlert, decode, encode

BTC = "BTC/USD"
ETH = "ETH/USD"
T0 = 1_705_312_345.0  # the seed's example time


def feed(
    detector: AlertDetector, path: Iterable[tuple[float, float]], pair: str = BTC
) -> list[RawAlert]:
    """Run (seconds after T0, price) trades through the detector; the alerts, in order."""
    alerts = []
    for offset, price in path:
        alert = detector.observe(pair, price, T0 + offset)
        if alert is not None:
            alerts.append(alert)
    return alerts


def flat(start: float, stop: float, price: float, step: float = 1.0) -> list[tuple[float, float]]:
    """A trade every ``step`` seconds in [start, stop), all at ``price``."""
    count = round((stop - start) / step)
    return [(start + i * step, price) for i in range(count)]


def ramp(start: float, prices: Iterable[float], step: float = 1.0) -> list[tuple[float, float]]:
    return [(start + i * step, price) for i, price in enumerate(prices)]


def kinds(alerts: list[RawAlert]) -> list[str]:
    return [alert.type for alert in alerts]


# 1 % within a minute; cooldown defaults to the window.
RULE = AlertRule(threshold_pct=1.0, window_s=60.0)


def test_jitter_below_the_threshold_gives_no_alert() -> None:
    detector = AlertDetector(RULE)
    rng = random.Random(7)
    path = [(i * 0.5, 100.0 * (1 + rng.uniform(-0.004, 0.004))) for i in range(20_000)]
    assert feed(detector, path) == []


def test_a_single_spike_gives_exactly_one_alert() -> None:
    detector = AlertDetector(RULE)
    # Flat, then up 5 x the threshold in one second steps, then a plateau far beyond the cooldown.
    path = flat(0, 30, 100.0) + ramp(30, [101.0, 102.0, 103.0, 104.0, 105.0]) + flat(35, 600, 105.0)
    alerts = feed(detector, path)
    assert kinds(alerts) == ["price_spike"]
    (alert,) = alerts
    assert alert.pair == BTC
    assert alert.change == 1.0  # the trade that completed the move, not the top of the spike
    assert alert.last == 101.0
    assert alert.timestamp == T0 + 30
    assert alert.threshold == 1.0
    assert alert.window_s == 60.0


def test_a_single_trade_jump_gives_one_alert_with_the_whole_move() -> None:
    detector = AlertDetector(RULE)
    alerts = feed(detector, [*flat(0, 10, 100.0), (10, 105.0), *flat(11, 300, 105.0)])
    assert [(a.type, a.change, a.last) for a in alerts] == [("price_spike", 5.0, 105.0)]


def test_a_drop_gives_a_price_drop_with_a_negative_change() -> None:
    detector = AlertDetector(RULE)
    alerts = feed(detector, [*flat(0, 10, 100.0), (10, 97.0), *flat(11, 300, 97.0)])
    assert [(a.type, a.change, a.last) for a in alerts] == [("price_drop", -3.0, 97.0)]


def test_a_move_of_exactly_the_threshold_alerts() -> None:
    rule = AlertRule(threshold_pct=2.0, window_s=60.0)
    assert kinds(feed(AlertDetector(rule), [(0, 100.0), (1, 102.0)])) == ["price_spike"]
    assert kinds(feed(AlertDetector(rule), [(0, 100.0), (1, 98.0)])) == ["price_drop"]
    assert feed(AlertDetector(rule), [(0, 100.0), (1, 101.99)]) == []
    assert feed(AlertDetector(rule), [(0, 100.0), (1, 98.01)]) == []


def test_a_spike_then_a_crash_gives_one_spike_and_one_drop() -> None:
    detector = AlertDetector(RULE)
    path = (
        flat(0, 30, 100.0)
        + ramp(30, [101.0, 102.0, 103.0, 104.0, 105.0])
        + flat(35, 45, 105.0)
        + ramp(45, [104.0, 103.0, 102.0, 101.0, 100.0, 99.0, 98.0, 97.0, 96.0, 95.0])
        + flat(55, 900, 95.0)
    )
    alerts = feed(detector, path)
    assert kinds(alerts) == ["price_spike", "price_drop"]
    drop = alerts[1]
    # Measured from the window's high after the spike (105), not from before the spike.
    assert drop.last == 103.0
    assert drop.change == round((103.0 - 105.0) / 105.0 * 100, 4)


def test_a_steady_climb_gives_at_most_one_alert_per_cooldown_period() -> None:
    # Ten times the threshold over ten minutes, a trade a second: 1 % takes about a minute,
    # well within the two-minute window, so an alert per crossing would be nine of them.
    rule = AlertRule(threshold_pct=1.0, window_s=120.0, cooldown_s=180.0)
    detector = AlertDetector(rule)
    duration = 600
    path = [(i, 100.0 * 1.1 ** (i / duration)) for i in range(duration + 1)]
    alerts = feed(detector, path)
    assert set(kinds(alerts)) == {"price_spike"}
    assert alerts
    assert len(alerts) <= duration / rule.effective_cooldown_s + 1
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(alerts)]
    assert all(gap >= rule.effective_cooldown_s for gap in gaps)


def test_without_a_cooldown_each_alert_is_still_a_fresh_threshold_move() -> None:
    # The reset window alone already makes one move one alert: each alert is a full threshold
    # above the previous alert's price.
    detector = AlertDetector(AlertRule(threshold_pct=1.0, window_s=120.0, cooldown_s=0.0))
    path = [(i, 100.0 * 1.1 ** (i / 600)) for i in range(601)]
    alerts = feed(detector, path)
    assert len(alerts) == 9  # 1.01 ** 9 < 1.1 < 1.01 ** 10
    for before, after in itertools.pairwise(alerts):
        assert after.last >= before.last * 1.01


def test_the_same_direction_alerts_again_once_the_cooldown_has_passed() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0, cooldown_s=100.0))
    path = [
        *flat(0, 10, 100.0),
        (10, 102.0),  # alert
        *flat(11, 30, 100.5),  # a pull-back of 1.5 %: below the threshold, no drop
        (30, 103.0),  # 2.5 % above the pull-back, within the cooldown: consumed, not reported
        *flat(31, 100, 103.0),
        (100, 105.1),  # 2 % above 103, still within the cooldown: consumed too
        *flat(101, 200, 105.1),
    ]
    alerts = feed(detector, path)
    assert kinds(alerts) == ["price_spike"]
    # 190 s after the first alert, past its cooldown: a new 2 % move is a new alert.
    assert kinds(feed(detector, [(200, 107.3)])) == ["price_spike"]


def test_a_reversal_alerts_at_once_only_when_it_is_a_full_threshold_move() -> None:
    rule = AlertRule(threshold_pct=2.0, window_s=60.0, cooldown_s=300.0)
    small = feed(AlertDetector(rule), [(0, 100.0), (1, 102.0), (2, 100.5), (3, 100.1)])
    assert kinds(small) == ["price_spike"]  # 1.9 % below the alert price: not a move
    full = feed(AlertDetector(rule), [(0, 100.0), (1, 102.0), (2, 99.9)])
    assert kinds(full) == ["price_spike", "price_drop"]
    assert full[1].change == round((99.9 - 102.0) / 102.0 * 100, 4)


def test_a_move_slower_than_the_window_gives_no_alert() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0))
    # 2 % over two minutes: any minute of it is about 1 %.
    path = [(i, 100.0 + 2.0 * i / 120) for i in range(121)]
    assert feed(detector, path) == []


def test_the_window_includes_its_oldest_edge() -> None:
    rule = AlertRule(threshold_pct=2.0, window_s=60.0)
    assert kinds(feed(AlertDetector(rule), [(0, 100.0), (60, 102.0)])) == ["price_spike"]
    assert feed(AlertDetector(rule), [(0, 100.0), (60.001, 102.0)]) == []


def test_an_alert_restarts_the_window_at_the_alerting_trade() -> None:
    detector = AlertDetector(RULE)
    feed(detector, flat(0, 30, 100.0))
    assert detector.points(BTC) == 30
    assert feed(detector, [(30, 101.5)]) != []
    assert detector.points(BTC) == 1


def test_per_pair_overrides_replace_the_default_rule() -> None:
    tight = AlertRule(threshold_pct=1.0, window_s=30.0, cooldown_s=10.0)
    detector = AlertDetector(AlertRule(threshold_pct=5.0, window_s=300.0), {BTC: tight})
    assert detector.rule_for(BTC) is tight
    assert detector.rule_for(ETH).threshold_pct == 5.0
    path = [(0, 100.0), (1, 102.0)]
    (alert,) = feed(detector, path, pair=BTC)
    assert (alert.threshold, alert.window_s) == (1.0, 30.0)
    assert feed(detector, path, pair=ETH) == []
    (alert,) = feed(detector, [(2, 105.0)], pair=ETH)
    assert (alert.pair, alert.threshold, alert.window_s) == (ETH, 5.0, 300.0)


def test_pairs_are_independent() -> None:
    detector = AlertDetector(RULE)
    # Interleaved: ETH's low prices are no reference for BTC, and BTC's cooldown does not
    # silence ETH.
    alerts = []
    for i in range(30):
        for pair, price in ((BTC, 100.0), (ETH, 2.0)):
            alert = detector.observe(pair, price, T0 + i)
            assert alert is None
    for pair, price in ((BTC, 101.5), (ETH, 2.05)):
        alert = detector.observe(pair, price, T0 + 30)
        assert alert is not None
        alerts.append(alert)
    assert [(a.pair, a.type) for a in alerts] == [(BTC, "price_spike"), (ETH, "price_spike")]
    assert detector.pairs() == 2


def test_memory_is_bounded_per_pair() -> None:
    # 100k trades a millisecond apart all fall within a one-hour window: without the bound the
    # window would hold all of them.
    bound = 256
    detector = AlertDetector(
        AlertRule(threshold_pct=1.0, window_s=3600.0), max_points_per_pair=bound
    )
    rng = random.Random(11)
    price = 100.0
    most = 0
    for i in range(100_000):
        price *= 1 + rng.uniform(
            -0.0005, 0.0004
        )  # a slow downward walk: the highs deque's worst case
        detector.observe(BTC, price, T0 + i / 1000)
        most = max(most, detector.points(BTC))
    assert most == bound
    assert detector.pairs() == 1


def test_a_trade_older_than_the_window_is_ignored() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0))
    feed(detector, [(100, 100.0), (101, 100.0)])
    # 61 s older than the newest trade: its move is over, and it must not become a reference.
    assert detector.observe(BTC, 90.0, T0 + 40) is None
    assert detector.points(BTC) == 2
    assert feed(detector, [(102, 100.0)]) == []


def test_a_slightly_late_trade_counts_and_keeps_its_own_time_in_the_alert() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0))
    feed(detector, [(0, 100.0), (50, 100.0)])
    alert = detector.observe(BTC, 97.0, T0 + 20)  # 30 s late, within the window
    assert alert is not None
    assert (alert.type, alert.timestamp) == ("price_drop", T0 + 20)
    assert detector.points(BTC) == 1


def test_late_trades_are_placed_at_the_newest_time() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0))
    # A late low at t=40 (seen after t=50) counts as happening at t=50, so it is still in the
    # window at t=105, where the point at t=40 would have expired.
    feed(detector, [(0, 100.0), (50, 100.0), (40, 99.0)])
    assert kinds(feed(detector, [(105, 101.0)])) == ["price_spike"]


@pytest.mark.parametrize("price", [math.nan, math.inf, -math.inf, 0.0, -1.0, -math.nan])
def test_an_invalid_price_is_ignored(price: float) -> None:
    detector = AlertDetector(RULE)
    assert detector.observe(ETH, price, T0) is None
    assert detector.pairs() == 0  # no state for a trade that was not one
    feed(detector, [(0, 100.0)])
    assert detector.observe(BTC, price, T0 + 1) is None
    assert detector.points(BTC) == 1
    assert feed(detector, [(2, 100.5), (3, 99.5)]) == []


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf, 0.0, -5.0])
def test_an_invalid_timestamp_is_ignored(timestamp: float) -> None:
    detector = AlertDetector(RULE)
    feed(detector, [(0, 100.0)])
    assert detector.observe(BTC, 200.0, timestamp) is None
    assert detector.points(BTC) == 1
    assert feed(detector, [(1, 100.2)]) == []  # neither a window expiry nor a new reference


def test_a_move_too_large_for_a_finite_percent_restarts_the_window() -> None:
    detector = AlertDetector(RULE)
    assert feed(detector, [(0, 1e-300), (1, 1e300)]) == []
    assert detector.points(BTC) == 1
    assert kinds(feed(detector, [(2, 0.9e300)])) == ["price_drop"]


def test_an_alert_encodes_as_a_valid_rawalert_record() -> None:
    detector = AlertDetector(AlertRule(threshold_pct=2.0, window_s=60.0))
    (alert,) = feed(detector, [(0, 99950.5), (1, 102_123.45)])
    record = encode(alert, producer="t")
    assert record.topic == "rawalert"
    assert record.key == BTC.encode()
    assert record.timestamp_ms == round((T0 + 1) * 1000)
    assert decode("rawalert", record.value, record.headers) == alert
    assert alert.change == 2.174  # (102123.45 - 99950.5) / 99950.5 = 2.17401...


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold_pct": 0.0, "window_s": 60.0}, "threshold_pct"),
        ({"threshold_pct": -1.0, "window_s": 60.0}, "threshold_pct"),
        ({"threshold_pct": math.nan, "window_s": 60.0}, "threshold_pct"),
        ({"threshold_pct": 1.0, "window_s": 0.0}, "window_s"),
        ({"threshold_pct": 1.0, "window_s": math.inf}, "window_s"),
        ({"threshold_pct": 1.0, "window_s": 60.0, "cooldown_s": -1.0}, "cooldown_s"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AlertRule(**kwargs)


def test_a_window_of_one_point_is_refused() -> None:
    with pytest.raises(ValueError, match="max_points_per_pair"):
        AlertDetector(RULE, max_points_per_pair=1)


def test_the_cooldown_defaults_to_the_window() -> None:
    assert AlertRule(threshold_pct=1.0, window_s=45.0).effective_cooldown_s == 45.0
    assert AlertRule(threshold_pct=1.0, window_s=45.0, cooldown_s=0.0).effective_cooldown_s == 0.0


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.floats(min_value=0.05, max_value=50.0),
    window=st.floats(min_value=0.5, max_value=3600.0),
    base=st.floats(min_value=1e-6, max_value=1e7),
    # Each trade: where its price sits in [base, base * (1 + threshold)), and how far its time
    # moves from the previous trade (negative: out of order).
    trades=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.999),
            st.floats(min_value=-100.0, max_value=100.0),
        ),
        min_size=1,
        max_size=200,
    ),
)
def test_a_path_that_never_spans_the_threshold_gives_no_alert(
    threshold: float, window: float, base: float, trades: list[tuple[float, float]]
) -> None:
    detector = AlertDetector(AlertRule(threshold_pct=threshold, window_s=window))
    prices = [base * (1 + fraction * threshold / 100) for fraction, _ in trades]
    assert max(prices) / min(prices) < 1 + threshold / 100
    now = T0
    for price, (_, step) in zip(prices, trades, strict=True):
        now += step
        assert detector.observe(BTC, price, now) is None
