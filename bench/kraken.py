"""The Kraken producer's trade path: trades/s on one core, and the latency it adds to each trade.

The real code path, in process: :meth:`KrakenFeed._dispatch` of the feed of a real
:class:`KrakenService` (parse, normalise, drop duplicates by ``trade_id``, count gaps, publish, feed
the alert detector), its ``shared.bus.Producer`` as the daemon runs it, against an embedded broker
started for the run on a free loopback port. Only the WebSocket itself is left out: the frames are
built beforehand as the bytes Kraken v2 sends (``{"channel": "trade", "type": "update", "data":
[...]}``), for a few pairs, with sequential trade ids, RFC 3339 times 0.5 ms apart and prices
within 0.1 % of a start price (so the 2 % alert rule never fires, as on a calm market).

Throughput: frames dispatched back to back, then every acknowledgement awaited; timed from the
first dispatch to the last ack, with 1 and with 10 trades per frame. The same frames are run again
with the producer's ``send`` replaced by a no-op (the envelope is still encoded) and with its
``publish`` replaced by a no-op (parse, normalise, dedupe and detect only), to show where the time
goes. CPU seconds come from ``time.process_time()``: this process's CPU, the broker's excluded;
CPU/wall at or under 1.0 means the path ran on one core.

Latency: 1 trade per frame, paced on the event loop at a realistic offered rate; a trade's latency
runs from just before ``_dispatch`` to the done-callback of the delivery future ``publish``
returned for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
from prometheus_client import CollectorRegistry

from bench import _samples, _table
from bench._timing import REPEATS, percentile
from bench.producer import FLUSH_TIMEOUT_S, _Acks, _environment
from services.kraken.protocol import format_rfc3339
from services.kraken.service import KrakenService
from services.kraken.settings import KrakenSettings
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.process import free_port
from shared.envelope import Payload, RawTrade
from shared.runtime import tune_gc
from shared.settings import load_settings

TARGET_TRADES_PER_S: Final = 50_000
OFFERED_TRADES_PER_S: Final = 2_000
FRAME_SIZES: Final = (1, 10)
# Start prices and price decimals, as Kraken quotes these pairs.
PAIRS: Final = {"BTC/USD": (97_123.4, 1), "ETH/USD": (3_350.12, 2), "SOL/USD": (243.17, 2)}
FIRST_TRADE_ID: Final = 83_723_412
TRADE_NOTIONAL: Final = 500.0  # median trade size in quote currency, as in the fake server


@dataclass(frozen=True, slots=True)
class Plan:
    throughput_trades: int
    latency_duration_s: float
    warmup_trades: int = 2_000


FULL = Plan(throughput_trades=30_000, latency_duration_s=5.0)
QUICK = Plan(throughput_trades=5_000, latency_duration_s=2.0, warmup_trades=500)


# --- frames as Kraken sends them ------------------------------------------------------------------


class _TradeOut(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    side: str
    price: float
    qty: float
    ord_type: str
    trade_id: int
    timestamp: str


class _TradeFrame(msgspec.Struct, frozen=True):
    channel: str
    type: str
    data: list[_TradeOut]


class _Market:
    """An endless, calm trade stream: ids and event times carry on from one batch to the next.

    They must: the service drops a trade whose id is not above its pair's last one, and the
    detector ignores trades older than its window, so a replayed batch would skip the real work.
    """

    def __init__(self, seed: int = 1) -> None:
        self._rng = random.Random(seed)  # a simulated market, not a secret
        self._next_id = dict.fromkeys(PAIRS, FIRST_TRADE_ID)
        self._pairs = itertools.cycle(PAIRS)
        self._clock = _samples.NOW
        self._encode = msgspec.json.Encoder().encode

    def frames(self, trades: int, per_frame: int) -> list[bytes]:
        """``trades`` trades in frames of ``per_frame``, each frame one pair's, pairs in turn."""
        return [
            self._frame(next(self._pairs), min(per_frame, trades - start))
            for start in range(0, trades, per_frame)
        ]

    def _frame(self, pair: str, count: int) -> bytes:
        return self._encode(
            _TradeFrame("trade", "update", [self._trade(pair) for _ in range(count)])
        )

    def _trade(self, pair: str) -> _TradeOut:
        rng = self._rng
        start, decimals = PAIRS[pair]
        price = round(start * (1 + rng.uniform(-0.001, 0.001)), decimals)
        trade_id = self._next_id[pair]
        self._next_id[pair] = trade_id + 1
        self._clock += 1 / OFFERED_TRADES_PER_S
        return _TradeOut(
            symbol=pair,
            side="buy" if rng.random() < 0.5 else "sell",
            price=price,
            qty=round(TRADE_NOTIONAL / price * rng.lognormvariate(0.0, 1.0), 8),
            ord_type="market" if rng.random() < 0.3 else "limit",
            trade_id=trade_id,
            timestamp=format_rfc3339(self._clock),
        )


# --- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mode:
    label: str
    #: the producer method replaced by an async no-op, or None for the whole path to the ack
    stubbed: str | None


MODES: Final = (
    Mode("to broker ack (whole path)", None),
    Mode("without send (envelope encoded)", "send"),
    Mode("without publish (parse, dedupe, detect)", "publish"),
)


@dataclass(frozen=True, slots=True)
class Throughput:
    mode: Mode
    per_frame: int
    trades: int
    frames: int
    elapsed_s: float
    cpu_s: float


@dataclass(frozen=True, slots=True)
class Latency:
    offered_rate: int
    trades: int
    sending_s: float
    elapsed_s: float  # sending, then waiting for the last acks
    cpu_s: float
    ordered_s: list[float]


async def _nothing(*_: object, **__: object) -> None:
    return None


@contextlib.contextmanager
def _stubbed(service: KrakenService, name: str | None) -> Iterator[None]:
    """Shadow one producer method with an async no-op for the block."""
    if name is None:
        yield
        return
    setattr(service.producer, name, _nothing)
    try:
        yield
    finally:
        delattr(service.producer, name)  # the class's method shows through again


async def _run(service: KrakenService, frames: Sequence[bytes]) -> tuple[float, float]:
    """Wall and CPU seconds to dispatch every frame and have every record acknowledged."""
    dispatch = service.feed._dispatch  # the feed's entry point for one frame
    gc.collect()
    cpu_started = time.process_time()
    started = time.perf_counter()
    for frame in frames:
        await dispatch(frame)
    unacked = await service.producer.flush(FLUSH_TIMEOUT_S)
    elapsed_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    if unacked:
        raise RuntimeError(f"{unacked} records not acknowledged within {FLUSH_TIMEOUT_S:.0f} s")
    return elapsed_s, cpu_s


async def _throughput(service: KrakenService, market: _Market, trades: int) -> list[Throughput]:
    """Best of 3 runs of ``trades`` fresh trades, per frame size and mode, the runs interleaved."""
    best: dict[tuple[int, Mode], Throughput] = {}
    for _ in range(REPEATS):
        for per_frame in FRAME_SIZES:
            for mode in MODES:
                frames = market.frames(trades, per_frame)
                with _stubbed(service, mode.stubbed):
                    elapsed_s, cpu_s = await _run(service, frames)
                run = Throughput(mode, per_frame, trades, len(frames), elapsed_s, cpu_s)
                previous = best.get((per_frame, mode))
                if previous is None or run.elapsed_s < previous.elapsed_s:
                    best[per_frame, mode] = run
    return [best[per_frame, mode] for per_frame in FRAME_SIZES for mode in MODES]


async def _latency(service: KrakenService, market: _Market, duration_s: float) -> Latency:
    """Offer 1-trade frames at the realistic rate; time each trade from receipt to its ack."""
    rate = OFFERED_TRADES_PER_S
    frames = market.frames(round(rate * duration_s), per_frame=1)
    acks = _Acks()
    received_at = 0.0
    publish = service.producer.publish

    async def watched(payload: Payload, *, event_id: str | None = None) -> Any:
        future = await publish(payload, event_id=event_id)
        if isinstance(payload, RawTrade):
            acks.watch(future, received_at)
        return future

    dispatch = service.feed._dispatch  # the feed's entry point for one frame
    service.producer.publish = watched  # type: ignore[method-assign]
    try:
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        for index, frame in enumerate(frames):
            # Deadline pacing, as in the producer benchmark: a late wake-up is caught up without
            # sleeping, and the receive time is taken after the wait, so it adds no latency.
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            received_at = time.perf_counter()
            await dispatch(frame)
        sending_s = time.perf_counter() - started
        unacked = await service.producer.flush(FLUSH_TIMEOUT_S)
        elapsed_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    finally:
        del service.producer.publish
    if acks.failures or unacked:
        raise RuntimeError(
            f"{len(acks.failures)} deliveries failed and {unacked} were not acknowledged"
            f" within {FLUSH_TIMEOUT_S:.0f} s; first failure: {acks.failures[:1]}"
        )
    return Latency(rate, len(frames), sending_s, elapsed_s, cpu_s, sorted(acks.latencies))


@dataclass(frozen=True, slots=True)
class Report:
    parameters: list[tuple[str, str]]
    throughput: list[Throughput]
    latency: Latency


def _check(registry: CollectorRegistry, delivered: int) -> None:
    """Every trade went the whole way: none invalid, duplicate or missed, none missing at ack."""

    def total(name: str, **labels: str) -> float:
        return sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    unexpected = {
        name: total(name)
        for name in (
            "cryptoviz_kraken_invalid_total",
            "cryptoviz_kraken_trade_duplicates_total",
            "cryptoviz_kraken_trade_gaps_total",
        )
    }
    acked = total("cryptoviz_kafka_messages_produced_total", topic=RawTrade.topic)
    if any(unexpected.values()) or acked != delivered:
        raise RuntimeError(
            f"expected {delivered:,} records acknowledged, got {acked:,.0f}; {unexpected}"
        )


async def _measure(settings: KrakenSettings, plan: Plan) -> Report:
    registry = CollectorRegistry()
    service = KrakenService(settings, registry)
    market = _Market()
    await service.start()
    tune_gc()  # as the daemon runtime does once its service has started
    try:
        # Connections, metadata and the first batches are paid for here, not in the figures.
        for per_frame in FRAME_SIZES:
            await _run(service, market.frames(plan.warmup_trades, per_frame))
        throughput = await _throughput(service, market, plan.throughput_trades)
        latency = await _latency(service, market, plan.latency_duration_s)
        _check(
            registry,
            plan.warmup_trades * len(FRAME_SIZES)
            + plan.throughput_trades * REPEATS * len(FRAME_SIZES)  # the whole-path runs
            + latency.trades,
        )
    finally:
        await service.stop()
    return Report(_parameters(settings), throughput, latency)


def _parameters(settings: KrakenSettings) -> list[tuple[str, str]]:
    return [
        ("pairs", ", ".join(settings.kraken_pairs)),
        ("trade frame", "channel trade, type update, one pair per frame"),
        ("producer", "acks=all, lz4, idempotence off (the embedded broker has none)"),
        ("linger_ms", str(settings.kafka_linger_ms)),
        ("max_pending", _table.count(settings.kafka_max_pending)),
        (
            "alert rule",
            f"{settings.alert_threshold_pct:g} % in {settings.alert_window_s:g} s"
            " (prices stay within 0.1 %: no alerts)",
        ),
    ]


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep the service's info lines (topics ensured, producer ready) out of the tables."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def main(*, quick: bool = False) -> None:
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="cryptoviz-bench-") as scratch:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(scratch) / "broker.log")
        try:
            broker.start()
            with _environment(
                CRYPTOVIZ_KAFKA_BOOTSTRAP=broker.bootstrap,
                # The embedded broker cannot initialise an idempotent producer (InitProducerId).
                CRYPTOVIZ_KAFKA_IDEMPOTENCE="false",
                # The trade-id state file the service saves at stop.
                CRYPTOVIZ_DATA_DIR=str(Path(scratch) / "data"),
                CRYPTOVIZ_KRAKEN_PAIRS=",".join(PAIRS),
            ):
                settings = load_settings(KrakenSettings)
            with _quiet_logs():
                report = asyncio.run(_measure(settings, plan))
        finally:
            broker.stop()
    _print(report)


# --- output ---------------------------------------------------------------------------------------


def _print(report: Report) -> None:
    print(
        _table.render(
            "Kraken trade path parameters (KrakenService, embedded broker on loopback)",
            ["parameter", "value"],
            [list(pair) for pair in report.parameters],
            labels=2,
        )
    )
    print()
    print(
        _table.render(
            "Kraken trade path throughput on one core"
            f" (KrakenFeed._dispatch onwards; target {_table.count(TARGET_TRADES_PER_S)} trades/s)",
            [
                "path",
                "trades/frame",
                "trades",
                "seconds",
                "trades/s",
                "frames/s",
                "CPU s/1k trades",
                "CPU/wall",
            ],
            [
                [
                    run.mode.label,
                    str(run.per_frame),
                    _table.count(run.trades),
                    f"{run.elapsed_s:.2f}",
                    _table.count(run.trades / run.elapsed_s),
                    _table.count(run.frames / run.elapsed_s),
                    f"{run.cpu_s / run.trades * 1000:.3f}",
                    f"{run.cpu_s / run.elapsed_s:.2f}",
                ]
                for run in report.throughput
            ],
        )
    )
    print()
    for run in report.throughput:
        if run.mode.stubbed is None:
            rate = run.trades / run.elapsed_s
            verdict = "met" if rate >= TARGET_TRADES_PER_S else "missed"
            frame = (
                "1 trade per frame" if run.per_frame == 1 else f"{run.per_frame} trades per frame"
            )
            print(
                f"Target {_table.count(TARGET_TRADES_PER_S)} trades/s on one core, {frame}:"
                f" reached {_table.count(rate)} ({verdict})."
            )
    print()
    latency = report.latency
    print(
        _table.render(
            "Kraken added latency, frame received to broker ack (1 trade per frame, paced; ms)",
            ["offered trades/s", "achieved trades/s", "trades", "p50", "p99", "max", "CPU/wall"],
            [
                [
                    _table.count(latency.offered_rate),
                    _table.count(latency.trades / latency.sending_s),
                    _table.count(latency.trades),
                    _table.millis(percentile(latency.ordered_s, 0.50)),
                    _table.millis(percentile(latency.ordered_s, 0.99)),
                    _table.millis(latency.ordered_s[-1]) if latency.ordered_s else "-",
                    f"{latency.cpu_s / latency.elapsed_s:.2f}",
                ]
            ],
        )
    )
