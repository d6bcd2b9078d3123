"""The deployment files: systemd units, supervisord.conf, Prometheus scrape config and alert rules.

These read the files as the programs that consume them do (systemd-analyze, supervisor's own config
parser, promtool when present), so a key systemd ignores or a program supervisord cannot find fails
here rather than on an operator's machine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = ROOT / "deploy" / "systemd"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SUPERVISORD_CONF = ROOT / "supervisord.conf"

TARGET = "cryptoviz.target"
SERVICES = ("cryptoviz-kraken.service", "cryptoviz-scraper.service", "cryptoviz-spark@.service")
SPARK_TEMPLATE = "cryptoviz-spark@.service"
SPARK_INSTANCES = ("cryptoviz-spark@ingestion.service", "cryptoviz-spark@analytics.service")
VENV_BIN = "/opt/cryptoviz/venv/bin/"
EX_CONFIG = 78

# Each daemon's HTTP port (/metrics /healthz /readyz): supervisord.conf and prometheus.yml agree.
DAEMON_PORTS = {
    "kraken": 9101,
    "scraper": 9102,
    "spark-ingestion": 9103,
    "spark-analytics": 9104,
}
SUPERVISOR_PROGRAMS = {
    "broker",
    "postgres",
    "provision",
    "migrate",
    "fake-kraken",
    "fake-news",
    *DAEMON_PORTS,
}
# What `make demo` exports; supervisord refuses a config whose %(ENV_...)s it cannot expand.
DEMO_ENV = {
    "CRYPTOVIZ_KRAKEN_URL": "ws://127.0.0.1:8765/v2",
    "CRYPTOVIZ_FAKE_KRAKEN": "true",
    "CRYPTOVIZ_SCRAPER_SOURCES": "var/fake-news-sources.toml",
    "CRYPTOVIZ_FAKE_NEWS": "true",
}

UnitFile = dict[str, list[tuple[str, str]]]


def _console_scripts() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return set(tomllib.load(file)["project"]["scripts"])


def _parse_unit(path: Path) -> UnitFile:
    """Sections of a unit file as (key, value) lists: keys such as Wants= may repeat."""
    sections: UnitFile = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: continuation lines are not expected"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} is outside any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def _values(unit: UnitFile, section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


def _words(unit: UnitFile, section: str, key: str) -> list[str]:
    return [word for value in _values(unit, section, key) for word in value.split()]


def _only(unit: UnitFile, section: str, key: str) -> str:
    values = _values(unit, section, key)
    assert len(values) == 1, f"[{section}] {key}= appears {len(values)} times, expected once"
    return values[0]


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.fail("systemd-analyze is missing (Debian package: systemd): the units go unchecked")

    # verify insists that ExecStart= names an executable: point the copies at a stub.
    stub = tmp_path / "daemon-stub"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    exec_start = re.compile(rf"^ExecStart={re.escape(VENV_BIN)}[\w-]+", re.MULTILINE)
    for name in (TARGET, *SERVICES):
        text = (SYSTEMD_DIR / name).read_text(encoding="utf-8")
        copied, count = exec_start.subn(lambda _: f"ExecStart={stub}", text)
        assert count == (0 if name == TARGET else 1), f"{name}: ExecStart= not under {VENV_BIN}"
        (tmp_path / name).write_text(copied, encoding="utf-8")
    # A template is verified through its instances; the symlinks name them.
    for instance in SPARK_INSTANCES:
        (tmp_path / instance).symlink_to(SPARK_TEMPLATE)

    units = [TARGET, *(name for name in SERVICES if name != SPARK_TEMPLATE), *SPARK_INSTANCES]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SYSTEMD_")}
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *(str(tmp_path / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    # verify exits 0 on unknown keys and bad values, which it only reports: any output fails.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_part_of_the_target(name: str) -> None:
    unit = _parse_unit(SYSTEMD_DIR / name)
    assert _words(unit, "Unit", "PartOf") == [TARGET]
    assert _words(unit, "Install", "WantedBy") == [TARGET]
    assert "network-online.target" in _words(unit, "Unit", "After")


@pytest.mark.parametrize("name", SERVICES)
def test_service_supervision(name: str) -> None:
    unit = _parse_unit(SYSTEMD_DIR / name)
    assert _only(unit, "Service", "Type") == "notify"
    assert _only(unit, "Service", "NotifyAccess") == "main"
    assert _only(unit, "Service", "WatchdogSec") == "30"
    assert _only(unit, "Service", "Restart") == "on-failure"
    # A daemon with an invalid configuration exits EX_CONFIG; restarting it cannot help.
    assert _words(unit, "Service", "RestartPreventExitStatus") == [str(EX_CONFIG)]
    # Longer than the daemons' own graceful stop (CRYPTOVIZ_STOP_TIMEOUT_S, 20 s by default).
    assert int(_only(unit, "Service", "TimeoutStopSec")) >= 25
    assert _only(unit, "Service", "User") == "cryptoviz"
    assert _only(unit, "Service", "StateDirectory") == "cryptoviz"
    assert "-/etc/cryptoviz/cryptoviz.env" in _values(unit, "Service", "EnvironmentFile")


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_a_console_script(name: str) -> None:
    command = shlex.split(_only(_parse_unit(SYSTEMD_DIR / name), "Service", "ExecStart"))
    assert command[0].startswith(VENV_BIN)
    assert command[0].removeprefix(VENV_BIN) in _console_scripts()


def test_spark_unit_lets_the_jvm_run() -> None:
    unit = _parse_unit(SYSTEMD_DIR / SPARK_TEMPLATE)
    # The JVM's JIT needs writable-executable memory.
    assert not _values(unit, "Service", "MemoryDenyWriteExecute")
    # The wrapper stops its spark-submit process group itself.
    assert _only(unit, "Service", "KillMode") == "mixed"
    assert shlex.split(_only(unit, "Service", "ExecStart"))[1:] == ["%i"]


def test_target_wants_every_daemon() -> None:
    unit = _parse_unit(SYSTEMD_DIR / TARGET)
    wanted = set(_words(unit, "Unit", "Wants"))
    assert wanted == {"cryptoviz-kraken.service", "cryptoviz-scraper.service", *SPARK_INSTANCES}
    assert _words(unit, "Install", "WantedBy") == ["multi-user.target"]


# --- supervisord -----------------------------------------------------------------------------


def test_supervisord_conf_runs_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imported here so that a missing supervisor fails these tests only, not the whole module.
    from supervisor.datatypes import RestartWhenExitUnexpected  # noqa: PLC0415 - see above
    from supervisor.options import ServerOptions  # noqa: PLC0415 - see above

    # %(here)s is the file's directory: parse a copy, with the log directory supervisord expects.
    conf = tmp_path / "supervisord.conf"
    shutil.copyfile(SUPERVISORD_CONF, conf)
    (tmp_path / "var" / "log").mkdir(parents=True)
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])

    assert options.nodaemon
    assert [group.name for group in options.process_group_configs] == ["cryptoviz"]
    programs = {p.name: p for p in options.process_group_configs[0].process_configs}
    assert set(programs) == SUPERVISOR_PROGRAMS

    scripts = _console_scripts()
    for name, program in programs.items():
        executable = Path(shlex.split(program.command)[0])
        assert executable.parent == tmp_path / ".venv" / "bin", name
        assert executable.name in scripts, name
        assert program.directory == str(tmp_path), name
        assert program.stopsignal == signal.SIGTERM, name
        assert program.stopwaitsecs >= 25, name
        assert program.stopasgroup, name
        assert program.killasgroup, name
        assert program.redirect_stderr, name
        assert program.stdout_logfile == str(tmp_path / "var" / "log" / f"{name}.log"), name
        assert program.stdout_logfile_backups > 0, name
        assert program.environment["CRYPTOVIZ_DATA_DIR"] == str(tmp_path / "var"), name
        # The embedded broker cannot initialise an idempotent producer.
        assert program.environment["CRYPTOVIZ_KAFKA_IDEMPOTENCE"] == "false", name

    for name in (
        "broker",
        "postgres",
        "provision",
        "migrate",
        "spark-ingestion",
        "kraken",
        "fake-kraken",
        "scraper",
        "fake-news",
    ):
        assert programs[name].autostart, name
    sources = programs["scraper"].environment["CRYPTOVIZ_SCRAPER_SOURCES"]
    assert sources == DEMO_ENV["CRYPTOVIZ_SCRAPER_SOURCES"]
    assert (
        programs["kraken"].environment["CRYPTOVIZ_KRAKEN_URL"] == DEMO_ENV["CRYPTOVIZ_KRAKEN_URL"]
    )
    assert shlex.split(programs["fake-kraken"].command)[1:3] == ["fake-kraken", "--port"]
    provision = programs["provision"]
    assert shlex.split(provision.command)[1:] == ["topics", "ensure", "--wait", "60"]
    assert provision.autorestart is False
    assert provision.startsecs == 0
    migrate = programs["migrate"]
    assert shlex.split(migrate.command)[1:] == ["db", "migrate", "--wait", "60"]
    assert migrate.autorestart is False
    assert not programs["spark-analytics"].autostart  # the job does not exist yet
    for name, port in DAEMON_PORTS.items():
        daemon = programs[name]
        assert daemon.environment["CRYPTOVIZ_HTTP_PORT"] == str(port), name
        # Exiting EX_CONFIG is expected: no restart into the same configuration error.
        assert daemon.autorestart is RestartWhenExitUnexpected, name
        assert EX_CONFIG in daemon.exitcodes, name
    assert programs["spark-ingestion"].command.endswith("/cryptoviz-spark ingestion")
    assert programs["spark-analytics"].command.endswith("/cryptoviz-spark analytics")


def test_supervisorctl_reaches_supervisord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.options import ClientOptions, ServerOptions  # noqa: PLC0415 - as above

    conf = tmp_path / "supervisord.conf"
    shutil.copyfile(SUPERVISORD_CONF, conf)
    (tmp_path / "var" / "log").mkdir(parents=True)
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)
    server = ServerOptions()
    server.realize(args=["-c", str(conf)])
    client = ClientOptions()
    client.realize(args=["-c", str(conf)])
    assert client.serverurl == f"unix://{server.server_configs[0]['file']}"


# --- Prometheus ------------------------------------------------------------------------------


def _promtool(*args: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# PromQL words that are neither metrics nor functions.
_PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "offset", "bool"}
_PROMQL_FUNCTIONS = {"time", "rate", "increase"}


def _alert_rules() -> list[dict[str, str]]:
    """The alert rules of alerts.yml as flat {key: value} maps; enough for this file's shape."""
    rules: list[dict[str, str]] = []
    for line in (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            rules.append({})
            stripped = stripped.removeprefix("- ")
        if rules and not stripped.startswith("#"):
            key, sep, value = stripped.partition(":")
            if sep and value.strip():
                rules[-1][key] = value.strip().strip('"')
    return rules


def test_alert_rules() -> None:
    _promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 8
    # Every metric an alert reads is one the code defines (counters gain _total when exposed).
    defined = {
        name
        for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
        for name in re.findall(r"\"(cryptoviz_[a-z0-9_]+)\"", path.read_text(encoding="utf-8"))
    }
    for rule in rules:
        assert rule.get("severity") in {"critical", "warning"}, rule["alert"]
        assert rule.get("summary"), rule["alert"]
        # Label matchers, ranges and strings hold no metric names.
        expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"", "", rule["expr"])
        for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", expr):
            word, call = match.groups()
            if call:
                assert word in _PROMQL_FUNCTIONS, f"{rule['alert']}: unexpected function {word}"
            elif word not in _PROMQL_KEYWORDS:
                assert word == "up" or word.removesuffix("_total") in defined, (
                    f"{rule['alert']}: {word} is not a metric of ours"
                )


def test_prometheus_scrapes_every_daemon() -> None:
    _promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    scrape_job = r"job_name:\s*(\S+)\s+static_configs:\s+- targets:\s*\[\"[^\"]+:(\d+)\"\]"
    jobs = re.findall(scrape_job, text)
    assert {job: int(port) for job, port in jobs} == {
        f"cryptoviz-{name}": port for name, port in DAEMON_PORTS.items()
    }
    assert re.search(r"^rule_files:\s+- alerts\.yml$", text, re.MULTILINE)
