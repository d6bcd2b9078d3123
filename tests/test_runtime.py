"""The lifecycle every daemon shares (shared.runtime), specified on a real process.

Each test runs ``python -m tests.daemons.sample`` and talks to it as systemd, supervisord and
Prometheus do: real signals, real HTTP on loopback, a real notify socket, JSON log lines on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared import __version__
from shared.sdnotify import Notifier
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (sys.executable, "-m", "tests.daemons.sample")
PROG = "cryptoviz-sample"
EX_CONFIG = 78
EX_CRASH = 1

# A deadline for things that take well under a second on an idle machine (interpreter start,
# imports, one backoff step): generous so a loaded CI runner does not fail a correct daemon.
PATIENCE_S = 15.0
# What a stop may take on top of CRYPTOVIZ_STOP_TIMEOUT_S: closing the HTTP server and the
# interpreter's own exit.
EXIT_MARGIN_S = 1.5
STOP_TIMEOUT_S = 3.0
# Variables of the machine running the tests that would change what the daemon does.
_FOREIGN_PREFIXES = ("CRYPTOVIZ_", "SAMPLE_", "NOTIFY_SOCKET", "WATCHDOG_")
STANDARD_COLLECTOR_PREFIXES = ("process_", "python_")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class SampleDaemon:
    """One ``tests.daemons.sample`` process, its log lines collected as they arrive."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*SAMPLE, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C on the test run must not reach it
        )
        self.lines: list[dict[str, Any]] = []
        self.not_json: list[str] = []
        self.stderr_lines: list[str] = []
        self._arrived = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._port: int | None = None

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._arrived:
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    self.not_json.append(raw)
                else:
                    if isinstance(line, dict):
                        self.lines.append(line)
                    else:
                        self.not_json.append(raw)
                self._arrived.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._arrived:
                self.stderr_lines.append(raw)
                self._arrived.notify_all()

    # -- logs -----------------------------------------------------------------------------------

    @property
    def events(self) -> list[str]:
        with self._arrived:
            return [str(line.get("event")) for line in self.lines]

    def logged(self, event: str) -> list[dict[str, Any]]:
        with self._arrived:
            return [line for line in self.lines if line.get("event") == event]

    def wait_for_log(
        self, event: str, *, count: int = 1, timeout: float = PATIENCE_S
    ) -> dict[str, Any]:
        """The ``count``-th line whose event is ``event``, waiting for it at most ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [line for line in self.lines if line.get("event") == event]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reading()):
                    pytest.fail(f"no {event!r} log line (x{count}); got {self.events}{self.output}")
                self._arrived.wait(min(remaining, 0.2))

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    @property
    def output(self) -> str:
        """Everything printed that is not a JSON log line, for failure messages and leak checks."""
        return "".join(self.not_json) + "".join(self.stderr_lines)

    @property
    def raw_output(self) -> str:
        with self._arrived:
            return "".join(json.dumps(line) + "\n" for line in self.lines) + self.output

    # -- HTTP -----------------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        if self._port is None:
            starting = self.wait_for_log("daemon starting")
            self._port = int(starting["http"].rpartition(":")[2])
        return self._port

    def get(self, path: str) -> HttpAnswer:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return HttpAnswer(
                    response.status, response.headers["Content-Type"], response.read().decode()
                )
        except urllib.error.HTTPError as error:
            with error:
                return HttpAnswer(error.code, error.headers["Content-Type"], error.read().decode())

    def metrics(self) -> dict[str, list[Sample]]:
        """Samples by family name, as Prometheus would scrape them."""
        answer = self.get("/metrics")
        assert answer.status == 200
        return {
            family.name: family.samples for family in text_string_to_metric_families(answer.body)
        }

    def metric(self, family: str, **labels: str) -> float:
        samples = [s for s in self.metrics().get(family, []) if s.labels == labels]
        return samples[0].value if samples else 0.0

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = PATIENCE_S) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting until {what}; log: {self.events}")
            time.sleep(0.05)

    # -- process --------------------------------------------------------------------------------

    def send(self, signum: signal.Signals) -> float:
        """Send ``signum``; return when it was sent (monotonic seconds)."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        return sent

    def wait_exit(self, timeout: float = PATIENCE_S) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {timeout} s; log: {self.events}")
        for reader in self._readers:
            reader.join(PATIENCE_S)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PATIENCE_S)
        for reader in self._readers:
            reader.join(PATIENCE_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


Spawn = Callable[..., SampleDaemon]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start sample daemons with a clean environment plus ``env``; kill leftovers afterwards.

    Every daemon gets a free HTTP port through CRYPTOVIZ_HTTP_PORT unless ``env`` sets one or
    ``port=False`` leaves the choice to an env file.
    """
    started: list[SampleDaemon] = []

    def spawn(*args: str, port: bool = True, **env: str) -> SampleDaemon:
        full_env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_FOREIGN_PREFIXES)
        }
        full_env |= {
            "CRYPTOVIZ_LOG_FORMAT": "json",
            "CRYPTOVIZ_DATA_DIR": str(tmp_path / "data"),
            "CRYPTOVIZ_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
        }
        if port:
            full_env["CRYPTOVIZ_HTTP_PORT"] = str(free_port())
        full_env |= env
        daemon = SampleDaemon(full_env, args)
        started.append(daemon)
        return daemon

    yield spawn
    for daemon in started:
        daemon.kill()


def ready_daemon(spawn: Spawn, **env: str) -> SampleDaemon:
    daemon = spawn(**env)
    daemon.wait_for_log("daemon ready")
    return daemon


def assert_clean_stop(daemon: SampleDaemon, sent: float, *, bound_s: float) -> float:
    """The daemon exits 0 within ``bound_s`` of ``sent``, its last line saying it stopped."""
    code = daemon.wait_exit(timeout=bound_s + PATIENCE_S)
    elapsed = time.monotonic() - sent
    assert code == 0, daemon.events
    assert elapsed < bound_s, f"took {elapsed:.2f} s, bound {bound_s} s"
    assert daemon.events[-1] == "daemon stopped", daemon.events
    assert daemon.lines[-1]["exit_code"] == 0
    return elapsed


# -- /metrics, /healthz, /readyz ------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_are_valid_prometheus_text_with_cryptoviz_names(spawn: Spawn) -> None:
    spawned_at = time.time()
    daemon = ready_daemon(spawn)
    daemon.wait_until("the service ticks", lambda: daemon.metric("cryptoviz_sample_ticks") >= 2)

    answer = daemon.get("/metrics")
    media_type, *params = (part.strip() for part in answer.content_type.split(";"))
    assert media_type == "text/plain"
    assert any(param in ("version=0.0.4", "version=1.0.0") for param in params), params
    families = {f.name: f for f in text_string_to_metric_families(answer.body)}

    build_info = families["cryptoviz_build_info"].samples
    assert [(s.labels, s.value) for s in build_info] == [
        ({"daemon": "sample", "version": __version__}, 1.0)
    ]
    assert families["cryptoviz_daemon_ready"].samples[0].value == 1.0
    started = families["cryptoviz_daemon_start_time_seconds"].samples[0].value
    assert spawned_at <= started <= time.time()  # Unix seconds, not milliseconds
    assert families["cryptoviz_sample_ticks"].type == "counter"
    for name, family in families.items():
        assert name.startswith(("cryptoviz_", *STANDARD_COLLECTOR_PREFIXES)), name
        assert not name.endswith(("_ms", "_milliseconds", "_minutes")), f"{name}: base units"
        if family.type == "counter":
            for sample in family.samples:
                assert sample.name.endswith("_total"), sample.name


@pytest.mark.slow
def test_the_counters_of_the_service_move_between_scrapes(spawn: Spawn) -> None:
    daemon = ready_daemon(spawn)
    first = daemon.metric("cryptoviz_sample_ticks")
    daemon.wait_until(
        "ticks grow", lambda: daemon.metric("cryptoviz_sample_ticks") > first, timeout=5
    )


@pytest.mark.slow
def test_healthz_and_readyz_answer_200_once_ready(spawn: Spawn) -> None:
    daemon = ready_daemon(spawn)

    health = daemon.get("/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok", "daemon": "sample"})
    ready = daemon.get("/readyz")
    assert ready.status == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"started": True, "not_stopping": True, "dependency": True},
    }


@pytest.mark.slow
def test_readyz_answers_503_while_a_dependency_check_fails(spawn: Spawn) -> None:
    daemon = ready_daemon(spawn, SAMPLE_NOT_READY="1")

    ready = daemon.get("/readyz")
    assert ready.status == 503
    assert ready.json() == {
        "ready": False,
        "checks": {"started": True, "not_stopping": True, "dependency": False},
    }
    assert daemon.metric("cryptoviz_daemon_ready") == 0.0
    assert daemon.get("/healthz").status == 200  # alive, only not ready: no restart wanted


@pytest.mark.slow
def test_readyz_answers_503_while_start_keeps_failing(spawn: Spawn) -> None:
    daemon = spawn(SAMPLE_FAIL_STARTS="1000")
    daemon.wait_for_log("start failed, retrying")

    ready = daemon.get("/readyz")
    assert ready.status == 503
    assert ready.json()["checks"]["started"] is False
    assert daemon.get("/healthz").status == 200

    def failures() -> float:
        return daemon.metric("cryptoviz_daemon_start_failures", reason="ConnectionError")

    seen = failures()
    assert seen >= 1
    daemon.wait_until("start failures are counted", lambda: failures() > seen)
    assert daemon.get("/readyz").status == 503
    assert not daemon.logged("daemon ready")


@pytest.mark.slow
def test_the_daemon_becomes_ready_once_start_succeeds(spawn: Spawn) -> None:
    daemon = spawn(SAMPLE_FAIL_STARTS="2")
    daemon.wait_for_log("daemon ready")

    assert daemon.get("/readyz").status == 200
    assert daemon.metric("cryptoviz_daemon_start_failures", reason="ConnectionError") == 2
    assert daemon.logged("sample started")[0]["attempts"] == 3
    failed = [line["attempt"] for line in daemon.logged("start failed, retrying")]
    assert failed == [1, 2]


# -- stopping -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_within_the_bound(spawn: Spawn, signum: signal.Signals) -> None:
    daemon = ready_daemon(spawn)

    sent = daemon.send(signum)

    assert_clean_stop(daemon, sent, bound_s=STOP_TIMEOUT_S + EXIT_MARGIN_S)
    assert daemon.logged("stop requested")[0]["signal"] == signum.name
    assert "sample stopped" in daemon.events  # the service's own stop ran
    assert "service finished its work" not in daemon.events  # it was told to stop
    assert not [line for line in daemon.lines if "cancel" in line["event"]], daemon.events
    assert daemon.not_json == []
    assert daemon.stderr_lines == []


@pytest.mark.slow
def test_a_hanging_stop_is_cancelled_at_the_stop_timeout(spawn: Spawn) -> None:
    daemon = ready_daemon(spawn, SAMPLE_STOP_HANGS="1", CRYPTOVIZ_STOP_TIMEOUT_S="1")

    sent = daemon.send(signal.SIGTERM)

    elapsed = assert_clean_stop(daemon, sent, bound_s=1 + EXIT_MARGIN_S)
    assert elapsed >= 0.8, "the service's stop deserved its full second"
    cancelled = daemon.logged("service stop did not finish in time, cancelled")
    assert len(cancelled) == 1
    assert cancelled[0]["level"] == "warning"


@pytest.mark.slow
def test_a_second_signal_cancels_a_hanging_stop_at_once(spawn: Spawn) -> None:
    daemon = ready_daemon(spawn, SAMPLE_STOP_HANGS="1", CRYPTOVIZ_STOP_TIMEOUT_S="60")
    daemon.send(signal.SIGTERM)
    daemon.wait_for_log("sample stop hanging")

    ready = daemon.get("/readyz")
    assert ready.status == 503
    assert ready.json()["checks"]["not_stopping"] is False

    sent = daemon.send(signal.SIGTERM)

    assert_clean_stop(daemon, sent, bound_s=EXIT_MARGIN_S)
    assert "second stop signal: cancelling without waiting" in daemon.events


@pytest.mark.slow
def test_sigterm_while_start_keeps_failing_exits_promptly(spawn: Spawn) -> None:
    daemon = spawn(SAMPLE_FAIL_STARTS="1000")
    daemon.wait_for_log("start failed, retrying", count=2)

    sent = daemon.send(signal.SIGTERM)

    code = daemon.wait_exit()
    assert time.monotonic() - sent < EXIT_MARGIN_S
    assert code == 0
    assert daemon.events[-1] == "daemon stopped before it was ready"


@pytest.mark.slow
def test_a_crash_in_run_exits_1_with_a_structured_traceback(spawn: Spawn) -> None:
    daemon = spawn(SAMPLE_RUN_CRASH="1")

    assert daemon.wait_exit() == EX_CRASH
    failed = daemon.logged("service failed")
    assert len(failed) == 1
    assert failed[0]["level"] == "error"
    [error] = failed[0]["exception"]
    assert (error["exc_type"], error["exc_value"]) == ("RuntimeError", "sample run crashed")
    assert all("locals" not in frame for frame in error["frames"])
    assert "sample stopped" in daemon.events  # dependencies are released on a crash too
    assert daemon.lines[-1]["event"] == "daemon stopped"
    assert daemon.lines[-1]["exit_code"] == EX_CRASH


@pytest.mark.slow
def test_a_run_that_returns_on_its_own_ends_the_daemon_cleanly(spawn: Spawn) -> None:
    daemon = spawn(SAMPLE_RUN_ONCE="1")

    assert daemon.wait_exit() == 0
    assert "service finished its work" in daemon.events
    assert "sample stopped" in daemon.events
    assert daemon.lines[-1]["event"] == "daemon stopped"
    assert daemon.lines[-1]["exit_code"] == 0


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_invalid_setting_exits_78_with_one_line_naming_it(spawn: Spawn) -> None:
    daemon = spawn(CRYPTOVIZ_HTTP_PORT="abc")

    assert daemon.wait_exit() == EX_CONFIG
    assert len(daemon.stderr_lines) == 1, daemon.stderr_lines
    assert daemon.stderr_lines[0].startswith(f"{PROG}: invalid setting CRYPTOVIZ_HTTP_PORT")
    assert "Traceback" not in daemon.raw_output


@pytest.mark.slow
def test_a_bad_dsn_exits_78_without_printing_its_password(spawn: Spawn) -> None:
    daemon = spawn(CRYPTOVIZ_DB_DSN="mysql://u:hunter2@h/db")

    assert daemon.wait_exit() == EX_CONFIG
    assert "CRYPTOVIZ_DB_DSN" in daemon.output
    assert "hunter2" not in daemon.raw_output


@pytest.mark.slow
def test_a_port_in_use_exits_78_naming_the_port_setting(spawn: Spawn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = spawn(CRYPTOVIZ_HTTP_PORT=str(port))

        assert daemon.wait_exit() == EX_CONFIG
    [error] = daemon.logged("cannot start")
    assert "CRYPTOVIZ_HTTP_PORT" in error["error"]
    assert str(port) in error["error"]
    assert "Traceback" not in daemon.raw_output


@pytest.mark.slow
def test_a_missing_env_file_exits_78(spawn: Spawn, tmp_path: Path) -> None:
    daemon = spawn(CRYPTOVIZ_ENV_FILE=str(tmp_path / "absent.env"))

    assert daemon.wait_exit() == EX_CONFIG
    assert "CRYPTOVIZ_ENV_FILE" in daemon.stderr_lines[0]
    assert "Traceback" not in daemon.raw_output


@pytest.mark.slow
@pytest.mark.parametrize("also_in_environment", [False, True], ids=["file", "env-wins"])
def test_an_env_file_is_honoured_and_real_variables_win(
    spawn: Spawn, tmp_path: Path, also_in_environment: bool
) -> None:
    from_file, from_env = free_port(), free_port()
    env_file = tmp_path / "sample.env"
    env_file.write_text(f"CRYPTOVIZ_HTTP_PORT={from_file}\n", encoding="utf-8")
    env = {"CRYPTOVIZ_HTTP_PORT": str(from_env)} if also_in_environment else {}

    daemon = spawn(port=False, CRYPTOVIZ_ENV_FILE=str(env_file), **env)

    expected = from_env if also_in_environment else from_file
    assert daemon.http_port == expected
    assert daemon.get("/healthz").status == 200


# -- systemd notify -------------------------------------------------------------------------------


class NotifySocket:
    """The receiving end systemd holds: a unix datagram socket, one notification per datagram."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.received: list[str] = []

    def wait_for(self, state: str, *, count: int = 1, timeout: float = PATIENCE_S) -> None:
        """Receive until ``count`` datagrams carry ``state`` (e.g. "READY=1")."""
        deadline = time.monotonic() + timeout
        while sum(state in m.split("\n") for m in self.received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{state} x{count} not notified; got {self.received}")
            self.sock.settimeout(remaining)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def index(self, state: str) -> int:
        return next(i for i, m in enumerate(self.received) if state in m.split("\n"))


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # Not pytest's tmp_path: a unix socket path must fit in 108 bytes.
    with (
        tempfile.TemporaryDirectory(prefix="cv-") as directory,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        address = str(Path(directory) / "notify")
        sock.bind(address)
        yield NotifySocket(sock, address)


@pytest.mark.slow
def test_ready_is_notified_only_after_start_succeeds(
    spawn: Spawn, notify_socket: NotifySocket
) -> None:
    daemon = spawn(SAMPLE_FAIL_STARTS="2", NOTIFY_SOCKET=notify_socket.address)

    notify_socket.wait_for("READY=1")

    waiting = "STATUS=waiting for dependencies: ConnectionError"
    before_ready = notify_socket.received[: notify_socket.index("READY=1")]
    assert before_ready == [waiting, waiting]
    assert daemon.wait_for_log("sample started")["attempts"] == 3


@pytest.mark.slow
def test_watchdog_pings_repeat_while_healthy_and_stopping_is_notified(
    spawn: Spawn, notify_socket: NotifySocket
) -> None:
    daemon = spawn(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="200000")
    notify_socket.wait_for("READY=1")
    # Pings come every 0.1 s, half the watchdog interval: three of them well within a second.
    notify_socket.wait_for("WATCHDOG=1", count=3, timeout=2)
    assert notify_socket.index("READY=1") < notify_socket.index("WATCHDOG=1")

    sent = daemon.send(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1")

    assert_clean_stop(daemon, sent, bound_s=STOP_TIMEOUT_S + EXIT_MARGIN_S)
    assert "cancelled tasks left at stop" not in daemon.events  # the watchdog is not leftover work


@pytest.mark.slow
def test_no_watchdog_ping_without_watchdog_usec(spawn: Spawn, notify_socket: NotifySocket) -> None:
    daemon = spawn(NOTIFY_SOCKET=notify_socket.address)
    notify_socket.wait_for("READY=1")
    daemon.send(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1")

    assert daemon.wait_exit() == 0
    assert not any("WATCHDOG=1" in message for message in notify_socket.received)


def test_notifier_is_a_no_op_without_notify_socket() -> None:
    notifier = Notifier({})

    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval_s is None


def test_notifier_reaches_an_abstract_namespace_address() -> None:
    name = f"cryptoviz-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(PATIENCE_S)

        sent = Notifier({"NOTIFY_SOCKET": f"@{name}"}).notify("READY=1", "STATUS=running")

        assert sent is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=running"


def test_notifier_reports_a_missing_socket_instead_of_raising(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})

    assert notifier.enabled
    assert notifier.notify("WATCHDOG=1") is False


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
    ids=["usec", "own-pid", "other-pid", "garbage", "unset"],
)
def test_the_watchdog_interval_is_for_this_process_only(
    environ: dict[str, str], interval_s: float | None
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@cryptoviz-test", **environ})

    assert notifier.watchdog_interval_s == interval_s


# -- command line ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_help_lists_the_cryptoviz_variables(spawn: Spawn) -> None:
    daemon = spawn("--help")

    assert daemon.wait_exit() == 0
    text = "".join(daemon.not_json)
    assert text.startswith(f"usage: {PROG}")
    for variable in ("CRYPTOVIZ_HTTP_PORT", "CRYPTOVIZ_STOP_TIMEOUT_S", "CRYPTOVIZ_ENV_FILE"):
        assert variable in text
    assert "CRYPTOVIZ_TICK_INTERVAL_S" in text  # the daemon's own settings too


@pytest.mark.slow
def test_version_prints_the_package_version(spawn: Spawn) -> None:
    daemon = spawn("--version")

    assert daemon.wait_exit() == 0
    assert "".join(daemon.not_json).strip() == f"{PROG} {__version__}"
