"""The spark-submit wrapper's own logic: the command it builds, how it reads the job's output
(structured lines, metrics), and what it refuses to start with."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.spark.jobs import JOBS
from services.spark.settings import SparkSettings
from services.spark.wrapper import (
    RecordAssembler,
    SparkJobService,
    submit_command,
    submit_environment,
)
from shared.settings import ConfigError, Settings, load_settings


@pytest.fixture
def spark_settings(make_settings: Callable[..., Settings]) -> Callable[..., SparkSettings]:
    def make(**env: str) -> SparkSettings:
        make_settings(**env)  # a clean CRYPTOVIZ_* environment plus env
        return load_settings(SparkSettings)

    return make


def test_the_command_runs_the_job_script_on_the_configured_master(
    spark_settings: Callable[..., SparkSettings],
) -> None:
    settings = spark_settings(
        CRYPTOVIZ_SPARK_MASTER="spark://master:7077",
        CRYPTOVIZ_SPARK_CONF="spark.executor.memory=2g,spark.ui.enabled=false",
        CRYPTOVIZ_SPARK_PACKAGES="org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0",
    )
    command = submit_command(settings, JOBS["ingestion"])
    assert command[0].endswith("spark-submit")
    assert command[1:5] == ["--master", "spark://master:7077", "--name", "cryptoviz-ingestion"]
    assert "spark.executor.memory=2g" in command
    assert "spark.log.level=WARN" in command
    assert command[command.index("--packages") + 1].startswith("org.apache.spark:spark-sql-kafka")
    assert command[-1].endswith("services/spark/jobs/kafka_to_timescale.py")
    assert Path(command[-1]).is_file()


def test_a_local_master_binds_spark_to_loopback_and_the_driver_runs_this_python(
    spark_settings: Callable[..., SparkSettings], tmp_path: Path
) -> None:
    env = submit_environment(spark_settings(), tmp_path / "stop")
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["CRYPTOVIZ_SPARK_STOP_FILE"] == str(tmp_path / "stop")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert Path(env["PYSPARK_PYTHON"]).name.startswith("python")


def test_a_spark_submit_that_does_not_exist_is_a_configuration_error(
    spark_settings: Callable[..., SparkSettings],
) -> None:
    settings = spark_settings(CRYPTOVIZ_SPARK_SUBMIT="/nowhere/spark-submit")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_SPARK_SUBMIT"):
        submit_command(settings, JOBS["ingestion"])


def test_bad_spark_conf_names_the_variable(spark_settings: Callable[..., SparkSettings]) -> None:
    with pytest.raises(ConfigError, match="CRYPTOVIZ_SPARK_CONF"):
        spark_settings(CRYPTOVIZ_SPARK_CONF="no-equals-sign")


def test_a_log4j_record_and_its_stack_trace_are_one_record() -> None:
    records: list[tuple[str, str, str, list[str]]] = []
    assembler = RecordAssembler(lambda *record: records.append(record))
    assembler.feed("Using Spark's default log4j profile")
    assembler.feed("26/11/25 01:54:10 WARN ProcessingTimeExecutor: Current batch is falling behind")
    assembler.feed("26/11/25 01:54:11 ERROR MicroBatchExecution: Query terminated with error")
    assembler.feed("java.lang.RuntimeException: boom")
    assembler.feed("\tat org.apache.spark.Foo(Foo.scala:1)")
    assembler.flush()
    assert records == [
        ("INFO", "spark-submit", "Using Spark's default log4j profile", []),
        ("WARN", "ProcessingTimeExecutor", "Current batch is falling behind", []),
        (
            "ERROR",
            "MicroBatchExecution",
            "Query terminated with error",
            ["java.lang.RuntimeException: boom", "\tat org.apache.spark.Foo(Foo.scala:1)"],
        ),
    ]


def driver_line(event: str, **fields: object) -> str:
    return json.dumps({"event": event, "level": "info", "logger": "x", **fields})


def test_the_driver_s_events_become_metrics_and_readiness(
    spark_settings: Callable[..., SparkSettings], registry: CollectorRegistry
) -> None:
    service = SparkJobService(spark_settings(), registry, JOBS["ingestion"])
    assert not service.readiness()["query_progressing"]
    service.handle_driver_line(driver_line("job started", query_id="q"))
    service.handle_driver_line(
        driver_line(
            "query progress",
            batch_id=3,
            input_rows=120,
            input_rows_per_second=60.0,
            processed_rows_per_second=400.0,
            trigger_ms=300,
        )
    )
    service.handle_driver_line(
        driver_line(
            "batch stored",
            written={"trade_data": 100},
            duplicates={"trade_data": 18},
            dead_letters={"rawtrade": {"invalid": 2}},
            group_committed=True,
            event_lag_s=0.8,
        )
    )
    service.handle_driver_line("not json: a Python warning")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert service.readiness()["query_progressing"]
    assert value("cryptoviz_spark_input_rows_total") == 120
    assert value("cryptoviz_spark_processed_rows_per_second") == 400
    assert value("cryptoviz_spark_batch_duration_seconds_count") == 1
    assert value("cryptoviz_spark_rows_written_total", table="trade_data") == 100
    assert value("cryptoviz_spark_rows_duplicate_total", table="trade_data") == 18
    # The names every consumer uses (shared.bus), so the same alerts cover the Spark jobs.
    assert value("cryptoviz_dead_letters_total", topic="rawtrade", reason="invalid") == 2
    assert value("cryptoviz_kafka_commits_total", group="spark-job-ingestion", outcome="ok") == 1
    assert value("cryptoviz_spark_event_lag_seconds") == 0.8
    assert value("cryptoviz_spark_log_records_total", level="info") == 4
