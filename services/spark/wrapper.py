"""The spark-submit wrapper: one Spark job as a supervised daemon.

The job runs as a child process group (``spark-submit`` starts a JVM, which starts the Python
driver). The wrapper:

- builds the ``spark-submit`` command from settings (master, ``--conf``, ``--packages``);
- turns the child's output into structured log lines: the driver's JSON lines are re-logged with
  their fields, Spark's log4j records (and their stack traces) become one line each with the
  right level;
- turns the driver's ``batch stored`` and ``query progress`` events into metrics, and polls the
  consumer group's lag on the broker;
- restarts a job that died with capped, jittered backoff (reset once a run lasted
  ``spark_restart_reset_s``); a job that exits 78 has a configuration problem no restart fixes;
- on stop, asks the driver to stop its query between batches (a stop file: a signal would reach
  the JVM and the Python driver in an undefined order), then signals the group, then kills it;
- is ready only while the query runs and reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.ops.errors import OperationFailed
from services.ops.groups import GroupAdmin
from services.spark.jobs import Job
from services.spark.settings import STOP_FILE_VARIABLE, SparkSettings
from shared.backoff import full_jitter_backoff
from shared.bus import ConsumerMetrics
from shared.runtime import Service
from shared.settings import ConfigError

log = structlog.get_logger(__name__)

EXIT_CONFIG: Final = ConfigError.exit_code
# A log4j record: "26/11/25 01:54:10 WARN ProcessingTimeExecutor: message".
LOG4J: Final = re.compile(
    r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?P<level>TRACE|DEBUG|INFO|WARN|ERROR|FATAL) "
    r"(?P<logger>[^:]+): (?P<message>.*)$"
)
LEVELS: Final = {
    "TRACE": "debug",
    "DEBUG": "debug",
    "INFO": "info",
    "WARN": "warning",
    "ERROR": "error",
    "FATAL": "critical",
}
# Lines of one record kept in its log line (a JVM stack trace runs to hundreds).
MAX_RECORD_LINES: Final = 40
LINE_LIMIT: Final = 1 << 20
PR_SET_PDEATHSIG: Final = 1
# Fields of the driver's own lines that the wrapper's logger sets again.
DRIVER_META: Final = frozenset({"event", "level", "logger", "timestamp", "job", "daemon"})


class SparkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.running = Gauge(
            "cryptoviz_spark_job_running",
            "1 while the spark-submit child process is alive.",
            registry=registry,
        )
        self.restarts = Counter(
            "cryptoviz_spark_job_restarts",
            "Times the job was started again after it ended on its own.",
            ["reason"],
            registry=registry,
        )
        self.input_rows = Counter(
            "cryptoviz_spark_input_rows",
            "Records read from Kafka by the query.",
            registry=registry,
        )
        self.input_rate = Gauge(
            "cryptoviz_spark_input_rows_per_second",
            "Input rate of the last micro-batch, as Spark reports it.",
            registry=registry,
        )
        self.processed_rate = Gauge(
            "cryptoviz_spark_processed_rows_per_second",
            "Processing rate of the last micro-batch, as Spark reports it.",
            registry=registry,
        )
        self.batch_duration = Histogram(
            "cryptoviz_spark_batch_duration_seconds",
            "Wall time of micro-batches that read records (trigger execution).",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.last_batch = Gauge(
            "cryptoviz_spark_last_progress_timestamp_seconds",
            "When the query last reported progress, Unix seconds.",
            registry=registry,
        )
        self.rows_written = Counter(
            "cryptoviz_spark_rows_written",
            "Rows inserted, per table.",
            ["table"],
            registry=registry,
        )
        self.rows_duplicate = Counter(
            "cryptoviz_spark_rows_duplicate",
            "Records whose row was already stored (a redelivery), per table.",
            ["table"],
            registry=registry,
        )
        self.db_retries = Counter(
            "cryptoviz_spark_db_retries",
            "Batch writes retried because the database was unreachable.",
            registry=registry,
        )
        self.event_lag = Gauge(
            "cryptoviz_spark_event_lag_seconds",
            "Age of the oldest record of the last stored batch when its transaction committed.",
            registry=registry,
        )
        # Dead letters, group commits and lag under the names every consumer uses (shared.bus),
        # so the same dashboards and alerts cover the Spark jobs.
        self.consumer = ConsumerMetrics.of(registry)
        self.log_records = Counter(
            "cryptoviz_spark_log_records",
            "Log records of the job's process group, per level.",
            ["level"],
            registry=registry,
        )


def spark_submit_path(settings: SparkSettings) -> str:
    """The spark-submit to run: the setting, else the one the pyspark package ships."""
    if settings.spark_submit:
        found = shutil.which(settings.spark_submit)
        if found is None:
            raise ConfigError(
                f"invalid setting CRYPTOVIZ_SPARK_SUBMIT: {settings.spark_submit!r} is not an "
                "executable"
            )
        return found
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ConfigError("pyspark is not installed: pip install 'cryptoviz[spark]'")
    return str(Path(spec.origin).parent / "bin" / "spark-submit")


def job_script(job: Job) -> str:
    spec = importlib.util.find_spec(job.module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"the module of job {job.name} ({job.module}) cannot be found")
    return spec.origin


def submit_command(settings: SparkSettings, job: Job) -> list[str]:
    conf = {
        # Spark's own INFO records (every task) drown the job's; DEBUG asks for them.
        "spark.log.level": "INFO" if settings.log_level == "DEBUG" else "WARN",
        **settings.spark_conf,
    }
    command = [
        spark_submit_path(settings),
        "--master",
        settings.spark_master,
        "--name",
        f"cryptoviz-{job.name}",
    ]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    if settings.spark_packages:
        command += ["--packages", settings.spark_packages]
    return [*command, job_script(job)]


def submit_environment(settings: SparkSettings, stop_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The driver and the executors' Python workers run this interpreter, which has the project.
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    env[STOP_FILE_VARIABLE] = str(stop_file)
    # The driver's events must arrive as they happen, not when a pipe buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    # pyspark warns at import that pandas 3 is not fully supported; the jobs use Arrow, not
    # pandas, and the warning would be the first line of every driver and worker.
    quiet = "ignore:PySpark does not yet fully support pandas:FutureWarning"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    if settings.spark_master.startswith("local"):
        # A local master has nothing to reach beyond this machine: bind to loopback rather than
        # the first interface's address.
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return env


class RecordAssembler:
    """Joins a log4j record and its continuation lines (stack traces) into one record."""

    def __init__(self, emit: Callable[[str, str, str, list[str]], None]) -> None:
        self._emit = emit
        self._head: tuple[str, str, str] | None = None
        self._lines: list[str] = []
        self._dropped = 0

    def feed(self, line: str) -> None:
        match = LOG4J.match(line)
        if match is not None:
            self.flush()
            self._head = (match["level"], match["logger"], match["message"])
            return
        if self._head is None:
            # Not a log4j record: the launcher's own output ("Using Spark's default log4j...").
            self._emit("INFO", "spark-submit", line, [])
            return
        if len(self._lines) < MAX_RECORD_LINES:
            self._lines.append(line)
        else:
            self._dropped += 1

    def flush(self) -> None:
        if self._head is None:
            return
        level, logger, message = self._head
        lines = self._lines
        if self._dropped:
            lines = [*lines, f"... {self._dropped} more lines"]
        self._emit(level, logger, message, lines)
        self._head, self._lines, self._dropped = None, [], 0


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it if the wrapper dies without stopping it
    (SIGKILL, a crash), so no Spark job outlives its supervisor. The job's own process group is
    out of reach of a supervisor that kills the wrapper's group; the JVM's children (the Python
    driver and workers) end when their JVM does."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def _readline(stream: asyncio.StreamReader) -> bytes | None:
    """The next line, None at the end; a line over the reader's limit is cut, not fatal."""
    try:
        raw = await stream.readline()
    except ValueError:  # over the limit: asyncio dropped the line's bytes read so far
        return b"[line over %d bytes cut]" % LINE_LIMIT
    return raw or None


class SparkJobService(Service):
    def __init__(self, settings: SparkSettings, registry: CollectorRegistry, job: Job) -> None:
        self.name = f"spark-{job.name}"
        self.settings = settings
        self.job = job
        self.metrics = SparkMetrics(registry)
        self.state_dir = settings.data_dir / "spark" / job.name
        self.stop_file = self.state_dir / "stop"
        self.command: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self.query_started = False
        self.last_progress = 0.0
        self._lag_task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.command = submit_command(self.settings, self.job)
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ConfigError("Spark needs Java 17 or later: put java on PATH or set JAVA_HOME")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lag_task = asyncio.create_task(self._poll_lag())

    def readiness(self) -> dict[str, bool]:
        alive = self.process is not None and self.process.returncode is None
        fresh = time.monotonic() - self.last_progress < self.settings.spark_progress_timeout_s
        return {"job_running": alive, "query_progressing": self.query_started and fresh}

    async def run(self, stopping: asyncio.Event) -> None:
        attempt = 0
        while not stopping.is_set():
            started = time.monotonic()
            code = await self._run_once(stopping)
            if stopping.is_set():
                return
            if code == EXIT_CONFIG:
                raise ConfigError(f"the {self.job.name} job refused its configuration (exit 78)")
            ran_s = time.monotonic() - started
            if ran_s >= self.settings.spark_restart_reset_s:
                attempt = 0
            delay = full_jitter_backoff(
                attempt, cap_s=self.settings.spark_restart_backoff_max_s, base_s=1.0
            )
            reason = "exited" if code == 0 else "failed"
            self.metrics.restarts.labels(reason).inc()
            log.warning(
                "job ended, restarting",
                exit_code=code,
                ran_s=round(ran_s, 1),
                attempt=attempt + 1,
                restart_in_s=round(delay, 2),
            )
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task

    # -- one run of the job ---------------------------------------------------------------------

    async def _run_once(self, stopping: asyncio.Event) -> int:
        self.stop_file.unlink(missing_ok=True)
        self.query_started = False
        log.info("starting job", command=self.command, master=self.settings.spark_master)
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=submit_environment(self.settings, self.stop_file),
            cwd=self.state_dir,
            limit=LINE_LIMIT,
            start_new_session=True,  # its own process group: the JVM, the driver, the workers
            preexec_fn=_die_with_parent,
        )
        self.process = process
        self.metrics.running.set(1)
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            asyncio.create_task(self._read_stdout(process.stdout)),
            asyncio.create_task(self._read_stderr(process.stderr)),
        ]
        exited = asyncio.create_task(process.wait())
        stop_wait = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({exited, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._stop_child(process)
            code = await exited
            await asyncio.wait(readers, timeout=5)
        finally:
            stop_wait.cancel()
            for task in readers:
                task.cancel()
            if process.returncode is None:
                self._signal_group(process, signal.SIGKILL)
                await process.wait()
            self.metrics.running.set(0)
            self.query_started = False
        log.info("job exited", exit_code=code)
        return code

    async def _stop_child(self, process: asyncio.subprocess.Process) -> None:
        """Stop file first (the query stops between batches), then SIGTERM, then SIGKILL, all
        within the daemon's stop timeout."""
        budget = max(3.0, self.settings.stop_timeout_s - 2.0)
        steps = ((None, budget * 0.7), (signal.SIGTERM, budget * 0.25), (signal.SIGKILL, 5.0))
        for signum, wait_s in steps:
            if signum is None:
                self.stop_file.touch()
                log.info("asking the job to stop", within_s=round(wait_s, 1))
            else:
                log.warning("job still running, signalling its group", signal=signum.name)
                self._signal_group(process, signum)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), wait_s)
            if process.returncode is not None:
                return

    @staticmethod
    def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    # -- output ---------------------------------------------------------------------------------

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        # Read to the end whatever happens: a reader that stopped would leave the pipe to fill
        # and the job to block on its next write.
        while (raw := await _readline(stream)) is not None:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            try:
                self.handle_driver_line(line)
            except Exception:
                log.exception("cannot handle a line of the job's output", line=line[:1000])

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        assembler = RecordAssembler(self._emit_spark_record)
        while True:
            try:
                raw = await asyncio.wait_for(_readline(stream), 0.5)
            except TimeoutError:
                assembler.flush()  # a record is complete once its stack trace stops coming
                continue
            if raw is None:
                break
            line = raw.decode(errors="replace").rstrip()
            if line:
                assembler.feed(line)
        assembler.flush()

    def _emit_spark_record(self, level: str, logger: str, message: str, lines: list[str]) -> None:
        method = LEVELS.get(level, "info")
        self.metrics.log_records.labels(method).inc()
        fields: dict[str, Any] = {"spark_logger": logger}
        if lines:
            fields["detail"] = "\n".join(lines)
        getattr(log, method)(message, origin="spark", **fields)

    def handle_driver_line(self, line: str) -> None:
        """One line of the driver's output: its JSON events, or anything else Python printed."""
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "event" not in record:
            self.metrics.log_records.labels("info").inc()
            log.info(line, origin="driver")
            return
        event = str(record["event"])
        level = str(record.get("level", "info")).lower()
        fields = {k: v for k, v in record.items() if k not in DRIVER_META and k != "origin"}
        self.metrics.log_records.labels(level).inc()
        getattr(log, level if level in LEVELS.values() else "info")(
            event, origin="driver", **fields
        )
        if event == "job started":
            self.query_started = True
            self.last_progress = time.monotonic()
        elif event == "query progress":
            self._on_progress(fields)
        elif event == "batch stored":
            self._on_batch(fields)
        elif event == "database unavailable, batch retried":
            self.metrics.db_retries.inc()
        elif event == "group offsets not committed":
            self.metrics.consumer.commits.labels(self.job.group, "failed").inc()

    def _on_progress(self, fields: dict[str, Any]) -> None:
        self.last_progress = time.monotonic()
        self.metrics.last_batch.set(time.time())
        rows = int(fields.get("input_rows") or 0)
        self.metrics.input_rows.inc(rows)
        self.metrics.input_rate.set(float(fields.get("input_rows_per_second") or 0.0))
        self.metrics.processed_rate.set(float(fields.get("processed_rows_per_second") or 0.0))
        trigger_ms = fields.get("trigger_ms")
        if rows and trigger_ms is not None:
            self.metrics.batch_duration.observe(float(trigger_ms) / 1000)

    def _on_batch(self, fields: dict[str, Any]) -> None:
        for table, count in (fields.get("written") or {}).items():
            self.metrics.rows_written.labels(table).inc(int(count))
        for table, count in (fields.get("duplicates") or {}).items():
            self.metrics.rows_duplicate.labels(table).inc(int(count))
        for topic, kinds in (fields.get("dead_letters") or {}).items():
            for kind, count in kinds.items():
                self.metrics.consumer.dead_letters.labels(topic, kind).inc(int(count))
        if fields.get("group_committed"):
            self.metrics.consumer.commits.labels(self.job.group, "ok").inc()
        if fields.get("event_lag_s") is not None:
            self.metrics.event_lag.set(float(fields["event_lag_s"]))

    # -- lag ------------------------------------------------------------------------------------

    async def _poll_lag(self) -> None:
        # Bounded: a broker that stops answering one request must not freeze the gauge for good.
        bound_s = max(10.0, 2 * self.settings.spark_lag_interval_s)
        while True:
            try:
                await asyncio.wait_for(self._update_lag(), bound_s)
            except TimeoutError:
                log.warning("consumer lag not read in time", timeout_s=bound_s)
            except (OperationFailed, OSError) as exc:
                log.debug("consumer lag not read", error=str(exc))
            await asyncio.sleep(self.settings.spark_lag_interval_s)

    async def _update_lag(self) -> None:
        async with GroupAdmin(self.settings, timeout_s=5.0) as admin:
            if self.job.group not in await admin.names():
                return
            info = await admin.describe(self.job.group)
            partitions = await admin.partition_offsets(self.job.group, info)
        per_topic: dict[str, int] = {}
        for p in partitions:
            if p.topic in self.job.topics and p.lag is not None:
                per_topic[p.topic] = per_topic.get(p.topic, 0) + p.lag
        for topic, lag in per_topic.items():
            self.metrics.consumer.lag.labels(self.job.group, topic).set(lag)
