"""``cryptoviz-kraken``: Kraken's tickers and trades into ``rawticker`` and ``rawtrade``, and
sharp moves into ``rawalert``.

Per trade: normalise (bad rows are counted and skipped), drop duplicates by ``trade_id`` (a
reconnect's snapshot repeats recent trades), count gaps, publish one record keyed by pair with the
trade's time as record time, then feed the alert detector. Publishing waits when the producer has
``CRYPTOVIZ_KAFKA_MAX_PENDING`` records in flight: with the broker away, intake slows down
instead of buffering without bound or dropping trades.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.kraken.alerts import AlertDetector, AlertRule
from services.kraken.feed import KrakenFeed
from services.kraken.protocol import (
    ProtocolError,
    TickerRow,
    TradeRow,
    ticker_payload,
    trade_payload,
)
from services.kraken.sequence import TradeSequence
from services.kraken.settings import KrakenSettings
from shared.bus import Producer
from shared.envelope import RawAlert, RawTicker, RawTrade
from shared.runtime import Service

log = structlog.get_logger(__name__)

TOPICS: Final = (RawTicker.topic, RawTrade.topic, RawAlert.topic)


class KrakenMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.invalid = Counter(
            "cryptoviz_kraken_invalid",
            "Frames or rows skipped as unusable, by kind.",
            ["kind"],
            registry=registry,
        )
        self.duplicates = Counter(
            "cryptoviz_kraken_trade_duplicates",
            "Trades dropped because their trade_id was already published.",
            ["pair"],
            registry=registry,
        )
        self.gaps = Counter(
            "cryptoviz_kraken_trade_gaps",
            "Jumps in a pair's trade_id sequence.",
            ["pair"],
            registry=registry,
        )
        self.missed = Counter(
            "cryptoviz_kraken_trades_missed",
            "Trades skipped by the sequence (sum of the gaps' sizes).",
            ["pair"],
            registry=registry,
        )
        self.stale_tickers = Counter(
            "cryptoviz_kraken_stale_tickers",
            "Ticker updates older than the pair's last one, skipped.",
            ["pair"],
            registry=registry,
        )
        self.alerts = Counter(
            "cryptoviz_alerts",
            "Alerts published, by pair and type.",
            ["pair", "type"],
            registry=registry,
        )
        self.last_message = Gauge(
            "cryptoviz_ws_last_message_timestamp_seconds",
            "When the last ticker or trade of the pair arrived, Unix seconds.",
            ["pair"],
            registry=registry,
        )


class KrakenService(Service):
    name = "kraken"

    def __init__(self, settings: KrakenSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.metrics = KrakenMetrics(registry)
        self.producer = Producer(
            settings, name="cryptoviz-kraken", registry=registry, topics=TOPICS
        )
        self.feed = KrakenFeed(settings, registry, self)
        self.sequence = TradeSequence(settings.data_dir / "kraken-trade-ids.json")
        self.detector = AlertDetector(
            AlertRule(
                settings.alert_threshold_pct, settings.alert_window_s, settings.alert_cooldown_s
            ),
            {
                pair: AlertRule(
                    override.threshold_pct or settings.alert_threshold_pct,
                    override.window_s or settings.alert_window_s,
                    override.cooldown_s
                    if override.cooldown_s is not None
                    else settings.alert_cooldown_s,
                )
                for pair, override in settings.alert_overrides.items()
            },
        )
        self._last_ticker: dict[str, float] = {}
        self._last_message_children: dict[str, Gauge] = {}
        self._producing = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.producer.start()
        self._producing = True
        self.sequence.load()
        log.info(
            "kraken producer ready",
            url=self.settings.kraken_url,
            pairs=list(self.settings.kraken_pairs),
            alert_threshold_pct=self.settings.alert_threshold_pct,
            alert_window_s=self.settings.alert_window_s,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        await self.feed.run(stopping)

    async def stop(self) -> None:
        # Intake is closed (run returned); what is in flight gets the rest of the stop budget.
        self._producing = False
        unsent = await self.producer.stop(timeout_s=self.settings.stop_timeout_s * 0.75)
        self.sequence.save()
        log.info("kraken producer stopped", undelivered=unsent)

    def readiness(self) -> dict[str, bool]:
        return {
            "kafka": self._producing,
            "kraken_connected": self.feed.connected,
            "kraken_subscribed": self.feed.fully_subscribed(),
            "kraken_online": self.feed.exchange_online(),
        }

    # -- frames ---------------------------------------------------------------------------------

    def _last_message(self, pair: str) -> Gauge:
        # Cached children: labels() takes a lock, and this runs for every trade.
        gauge = self._last_message_children.get(pair)
        if gauge is None:
            gauge = self._last_message_children[pair] = self.metrics.last_message.labels(pair)
        return gauge

    def on_invalid(self, error: ProtocolError) -> None:
        self.metrics.invalid.labels(error.kind).inc()
        log.warning("kraken frame skipped", kind=error.kind, reason=error.reason)

    async def on_trades(self, rows: list[TradeRow], received_at: float) -> None:
        for row in rows:
            try:
                trade = trade_payload(row)
            except ProtocolError as error:
                self.on_invalid(error)
                continue
            pair = trade.pair
            assert trade.trade_id is not None  # trade_payload always sets it
            verdict = self.sequence.check(pair, trade.trade_id)
            if not verdict.accept:
                self.metrics.duplicates.labels(pair).inc()
                continue
            if verdict.missed:
                self.metrics.gaps.labels(pair).inc()
                self.metrics.missed.labels(pair).inc(verdict.missed)
                log.warning(
                    "trades missed", pair=pair, missed=verdict.missed, resumed_at=trade.trade_id
                )
            self._last_message(pair).set(received_at)
            # The event id names the trade: a consumer can dedupe on it across producers.
            await self.producer.publish(trade, event_id=f"{pair}:{trade.trade_id}")
            alert = self.detector.observe(pair, trade.price, trade.timestamp)
            if alert is not None:
                await self._alert(alert)

    async def _alert(self, alert: RawAlert) -> None:
        self.metrics.alerts.labels(alert.pair, alert.type).inc()
        log.info(
            "price alert",
            pair=alert.pair,
            type=alert.type,
            change_pct=alert.change,
            last=alert.last,
            window_s=alert.window_s,
        )
        await self.producer.publish(alert)

    async def on_tickers(self, rows: list[TickerRow], received_at: float) -> None:
        for row in rows:
            try:
                ticker = ticker_payload(row, received_at)
            except ProtocolError as error:
                self.on_invalid(error)
                continue
            last = self._last_ticker.get(ticker.pair)
            if last is not None and ticker.timestamp < last:
                self.metrics.stale_tickers.labels(ticker.pair).inc()
                continue
            self._last_ticker[ticker.pair] = ticker.timestamp
            self._last_message(ticker.pair).set(received_at)
            await self.producer.publish(ticker)
