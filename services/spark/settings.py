"""Settings of ``cryptoviz-spark`` and of the Spark jobs it runs (on top of ``shared.settings``).

The wrapper daemon and the job's driver read the same variables: the wrapper passes its whole
environment to ``spark-submit``, so what an operator sets for the unit reaches the job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import Port, Settings

# How the wrapper asks the job's driver to stop: by creating the file this variable names.
STOP_FILE_VARIABLE: Final = "CRYPTOVIZ_SPARK_STOP_FILE"


class SparkSettings(Settings):
    # The ingestion job's port; supervisord and the unit give each job its own.
    http_port: Port = 9103

    # spark-submit: the one pyspark ships unless set. Cluster masters (spark://, yarn, k8s://)
    # work unchanged; the job's package must then be installed where the executors run.
    spark_submit: str | None = None
    spark_master: str = Field(default="local[*]", min_length=1)
    # Extra Spark configuration, "k=v,k=v" or a JSON object: spark.driver.memory=2g...
    spark_conf: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Maven coordinates for --packages (the Kafka connector on a cluster that can reach Maven).
    spark_packages: str = ""
    # auto: Spark's own kafka source when its jars are on the classpath, else the Python one.
    spark_kafka_source: Literal["auto", "native", "python"] = "auto"
    # Where Spark keeps the query's checkpoint; default DATA_DIR/spark/<job>/checkpoint.
    spark_checkpoint_dir: Path | None = None
    spark_trigger_s: float = Field(default=1.0, ge=0.05, le=3600)
    # Where a job with no checkpoint and no committed group offsets starts (the seed: latest).
    spark_starting_offsets: Literal["earliest", "latest"] = "latest"
    spark_max_offsets_per_trigger: int = Field(default=500_000, ge=1)
    # How long a batch waits out an unreachable database before the query fails.
    spark_db_retry_s: float = Field(default=300.0, ge=0)

    # The wrapper
    # /readyz turns 503 when the query reported no progress for this long (Spark reports an
    # idle trigger every 10 s at the latest).
    spark_progress_timeout_s: float = Field(default=60.0, gt=0)
    spark_restart_backoff_max_s: float = Field(default=60.0, gt=0)
    # A job that ran this long before it failed is restarted without delay.
    spark_restart_reset_s: float = Field(default=300.0, gt=0)
    spark_lag_interval_s: float = Field(default=15.0, gt=0)

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _conf(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text)
        pairs: dict[str, str] = {}
        for item in text.split(","):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected k=v,k=v or a JSON object, got {item!r}")
            pairs[key.strip()] = val.strip()
        return pairs

    @field_validator("spark_submit", "spark_checkpoint_dir", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def checkpoint_dir(self, job: str) -> Path:
        return self.spark_checkpoint_dir or self.data_dir / "spark" / job / "checkpoint"
