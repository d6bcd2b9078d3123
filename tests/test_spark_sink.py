"""Where a micro-batch lands: one transaction into the tables, idempotent, bad records to the
dead-letter table with their Kafka coordinates; and the group offsets that follow it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from confluent_kafka import Producer

from services.spark.group_offsets import (
    GroupCommitter,
    committed_offsets,
    last_committed_batch,
    reconcile,
)
from services.spark.sink import BatchResult, PostgresSink, batch_offsets
from shared.db.migrate import migrate_dsn
from shared.embedded.broker import EmbeddedBroker
from shared.embedded.postgres import EmbeddedPostgres
from tests.conftest import free_port
from tests.spark_records import T0, Raw, alert, article, decoded_table, ticker, trade


@pytest.fixture
def sink(migrated_database: str) -> Iterator[PostgresSink]:
    writer = PostgresSink(migrated_database)
    yield writer
    writer.close()


def rows(dsn: str, sql: str) -> list[dict[str, Any]]:
    # The sink runs its own event loop in the calling thread, as in Spark's foreachBatch: these
    # tests are synchronous, and so are their queries.
    async def fetch() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def store(sink: PostgresSink, records: list[Raw], batch_id: int = 0) -> BatchResult:
    table = decoded_table(records)
    result = BatchResult(batch_id=batch_id, rows_in=table.num_rows)
    sink.write(batch_id, table, result)
    return result


def test_each_topic_lands_in_its_table_with_times_as_timestamps(
    sink: PostgresSink, migrated_database: str
) -> None:
    result = store(sink, [Raw.of(trade(1)), Raw.of(ticker()), Raw.of(alert()), Raw.of(article())])
    assert result.written == {
        "trade_data": 1,
        "ticker_data": 1,
        "alert_data": 1,
        "article_data": 1,
    }
    [stored] = rows(migrated_database, "SELECT * FROM trade_data")
    assert stored == {
        "pair": "BTC/USD",
        "ts": at(T0 + 1),
        "trade_id": 1,
        "price": 97_000.5,
        "volume": 0.25,
        "side": "b",
        "trade_key": "id:1",
    }
    [stored] = rows(migrated_database, "SELECT * FROM article_data")
    assert stored["content_text"] == "Bitcoin rose above $97,000 as ETF inflows resumed."
    assert stored["published_at"] == at(T0 - 600)
    assert stored["tags"] == ["markets", "bitcoin"]
    assert (stored["sentiment_score"], stored["sentiment_label"]) == (0.62, "positive")
    assert stored["cryptocurrencies_mentioned"] == ["BTC", "ETH"]
    [stored] = rows(migrated_database, "SELECT * FROM alert_data")
    assert (stored["type"], stored["change"], stored["window_s"]) == ("price_spike", 6.2, 300.0)


def test_the_same_records_again_change_nothing(sink: PostgresSink, migrated_database: str) -> None:
    batch = [Raw.of(trade(i)) for i in range(5)] + [Raw.of(article(published=None))]
    store(sink, batch)
    # Redelivered, in a later batch and twice within one batch.
    again = store(sink, batch + batch[:2], batch_id=1)
    assert again.written == {"trade_data": 0, "article_data": 0}
    assert again.duplicates == {"trade_data": 7, "article_data": 1}
    counted = rows(
        migrated_database,
        "SELECT (SELECT count(*) FROM trade_data) AS trades, "
        "(SELECT count(*) FROM article_data) AS articles",
    )
    assert counted == [{"trades": 5, "articles": 1}]


def test_bad_records_are_dead_letters_keyed_by_their_kafka_coordinates(
    sink: PostgresSink, migrated_database: str
) -> None:
    batch = [Raw.of(trade(1)), Raw("rawtrade", b"{broken"), Raw("rawtrade", b'{"pair": 1}')]
    result = store(sink, batch)
    assert result.dead_letters == {("rawtrade", "malformed_json"): 1, ("rawtrade", "invalid"): 1}
    store(sink, batch, batch_id=1)  # redelivered: still one row each
    letters = rows(
        migrated_database,
        "SELECT topic, partition, kafka_offset, key, value, kind, reason FROM dead_letters "
        "ORDER BY kafka_offset",
    )
    assert [(r["topic"], r["partition"], r["kafka_offset"], r["kind"]) for r in letters] == [
        ("rawtrade", 0, 1, "malformed_json"),
        ("rawtrade", 0, 2, "invalid"),
    ]
    assert letters[0]["value"] == b"{broken"
    assert "rawtrade.pair" in letters[1]["reason"]


def test_a_row_the_database_refuses_is_a_dead_letter_and_the_rest_is_stored(
    sink: PostgresSink, migrated_database: str
) -> None:
    # A rule the envelope does not know: the whole batch must not fail forever on one row.
    rows(migrated_database, "ALTER TABLE trade_data ADD CONSTRAINT sane_price CHECK (price < 1e6)")
    batch = [Raw.of(trade(1)), Raw.of(trade(2, price=5e6)), Raw.of(trade(3)), Raw.of(ticker())]
    result = store(sink, batch)
    assert result.written == {"trade_data": 2, "ticker_data": 1}
    assert result.dead_letters == {("rawtrade", "db_rejected"): 1}
    [letter] = rows(migrated_database, "SELECT * FROM dead_letters")
    assert (letter["topic"], letter["kafka_offset"], letter["kind"]) == (
        "rawtrade",
        1,
        "db_rejected",
    )
    assert "sane_price" in letter["reason"]
    assert json.loads(letter["value"])["price"] == 5e6


def test_an_unreachable_database_is_retried_then_fails_the_batch() -> None:
    writer = PostgresSink(f"postgresql://nobody@127.0.0.1:{free_port()}/none", retry_for_s=1.5)
    result = BatchResult(batch_id=0)
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        writer.write(0, decoded_table([Raw.of(trade(1))]), result)
    assert time.monotonic() - started >= 1.5
    assert result.db_attempts > 1
    writer.close()


def test_a_database_back_within_the_retry_window_gets_the_batch(workdir: Path) -> None:
    server = EmbeddedPostgres(workdir / f"pg-{free_port()}", port=free_port())
    server.start()
    asyncio.run(migrate_dsn(server.dsn))
    writer = PostgresSink(server.dsn, retry_for_s=60)
    try:
        store(writer, [Raw.of(trade(1))])
        server.stop()
        threading.Timer(3, server.start).start()
        result = store(writer, [Raw.of(trade(2))], 1)
        assert result.db_attempts > 1
        assert rows(server.dsn, "SELECT trade_id FROM trade_data ORDER BY 1") == [
            {"trade_id": 1},
            {"trade_id": 2},
        ]
    finally:
        writer.close()
        server.stop()


def test_the_group_commits_the_next_offset_after_each_partition_s_last_record() -> None:
    table = decoded_table([Raw.of(trade(i)) for i in range(3)] + [Raw("rawticker", b"bad")])
    assert batch_offsets(table) == {"rawtrade": {"0": 3}, "rawticker": {"0": 1}}


def test_group_offsets_are_committed_without_joining_and_read_back(
    private_broker: EmbeddedBroker,
) -> None:
    config = {"bootstrap.servers": private_broker.bootstrap}
    producer = Producer(config)
    producer.produce("rawtrade", b"{}", partition=0)
    producer.flush(10)
    committer = GroupCommitter(config, "spark-job-ingestion")
    committer.commit({"rawtrade": {"0": 1}})
    committer.close()
    assert committed_offsets(config, "spark-job-ingestion", ["rawtrade"]) == {"rawtrade": {"0": 1}}


def write_checkpoint(path: Path, batches: dict[int, dict[str, dict[str, int]]], done: int) -> None:
    (path / "offsets").mkdir(parents=True)
    (path / "commits").mkdir()
    for batch_id, offsets in batches.items():
        (path / "offsets" / str(batch_id)).write_text(
            f'v1\n{{"batchWatermarkMs":0}}\n{json.dumps(offsets)}\n'
        )
        if batch_id <= done:
            (path / "commits" / str(batch_id)).write_text('v1\n{"nextBatchWatermarkMs":0}\n')


def test_the_last_committed_batch_is_read_from_the_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(checkpoint, {0: {"rawtrade": {"0": 5}}, 1: {"rawtrade": {"0": 9}}}, done=0)
    assert last_committed_batch(checkpoint) == (0, {"rawtrade": {"0": 5}})
    assert last_committed_batch(tmp_path / "none") is None


def test_a_checkpoint_that_agrees_with_the_group_is_kept(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(checkpoint, {3: {"rawtrade": {"0": 9}, "rawticker": {"0": 0}}}, done=3)
    assert not reconcile(checkpoint, {"rawtrade": {"0": 9}}, "g")
    assert checkpoint.is_dir()


def test_a_group_moved_by_an_operator_sets_the_checkpoint_aside(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(checkpoint, {3: {"rawtrade": {"0": 9}}}, done=3)
    assert reconcile(checkpoint, {"rawtrade": {"0": 0}}, "g")  # reset to earliest
    assert not checkpoint.exists()
    assert [p.name.split(".")[1][:8] for p in tmp_path.iterdir()] == ["replaced"]


def test_a_group_without_offsets_sets_the_checkpoint_aside(tmp_path: Path) -> None:
    # The embedded broker forgets groups and logs on restart: resuming at the checkpoint's
    # offsets would skip the new log's first records.
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(checkpoint, {3: {"rawtrade": {"0": 9}}}, done=3)
    assert reconcile(checkpoint, {}, "g")
    assert not checkpoint.exists()
    assert not reconcile(tmp_path / "never-ran", {}, "g")
