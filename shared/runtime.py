"""The lifecycle every CRYPTO VIZ daemon shares.

A daemon is a :class:`Service` (start, run, stop, readiness) handed to :func:`main`, which:

1. validates settings (a bad one exits 78, EX_CONFIG, with a line naming the variable);
2. serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``CRYPTOVIZ_HTTP_PORT`` from the first
   moment, so a daemon stuck waiting for Kafka is visible (``/readyz`` answers 503);
3. starts the service, retrying failures with capped, jittered backoff (an unreachable broker at
   start is an outage to wait out, not a crash);
4. tells systemd READY=1 once started, WATCHDOG=1 only while the service is healthy;
5. on SIGTERM or SIGINT (the handler only sets an event), stops in order within
   ``CRYPTOVIZ_STOP_TIMEOUT_S``: readiness off, STOPPING=1, let ``run`` return, ``stop`` the
   service (flush producers, close pools), cancel whatever is left and say how much.

A second signal during the stop skips the wait and cancels at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Final, Generic, NoReturn, TypeVar

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from shared import __version__
from shared.backoff import full_jitter_backoff
from shared.logs import bind, configure_logging
from shared.sdnotify import Notifier
from shared.settings import ConfigError, Settings, load_settings

log = structlog.get_logger(__name__)

# `_created` series double every counter's output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

EXIT_OK: Final = 0
EXIT_CRASH: Final = 1
EXIT_CONFIG: Final = ConfigError.exit_code
START_BACKOFF_CAP_S: Final = 30.0

S = TypeVar("S", bound=Settings)


class Service(ABC):
    """One daemon's work. The runtime calls start, then run, then stop, each exactly once."""

    #: Short name: logs, metrics' build info, the Kafka client id.
    name: str = "service"

    @abstractmethod
    async def start(self) -> None:
        """Connect dependencies. Raise to have the runtime retry; ConfigError to give up."""

    @abstractmethod
    async def run(self, stopping: asyncio.Event) -> None:
        """Do the work until ``stopping`` is set; return soon after it is. Returning on its own
        means the work is finished (a one-shot pass) and the daemon exits."""

    async def stop(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release everything ``start`` took: flush producers, close pools. Called once."""

    def readiness(self) -> dict[str, bool]:
        """Named checks that must all hold for ``/readyz`` to answer 200 (e.g. "kafka": True)."""
        return {}


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Gauge(
            "cryptoviz_build_info",
            "Always 1; the labels say which daemon and version.",
            ["daemon", "version"],
            registry=registry,
        ).labels(name, __version__).set(1)
        self.start_time = Gauge(
            "cryptoviz_daemon_start_time_seconds",
            "When the service finished starting, Unix seconds (0 until then).",
            registry=registry,
        )
        self.start_failures = Counter(
            "cryptoviz_daemon_start_failures",
            "Failed attempts to start the service (dependencies unreachable).",
            ["reason"],
            registry=registry,
        )
        self.ready = Gauge(
            "cryptoviz_daemon_ready",
            "1 while /readyz answers 200.",
            registry=registry,
        )
        self.stop_cancelled_tasks = Counter(
            "cryptoviz_daemon_stop_cancelled_tasks",
            "Tasks still running when the graceful stop ran out of time, cancelled.",
            registry=registry,
        )


class Daemon(Generic[S]):
    """Runs one :class:`Service` under the lifecycle described in this module's docstring."""

    def __init__(
        self,
        service: Service,
        settings: S,
        registry: CollectorRegistry,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.registry = registry
        self.metrics = DaemonMetrics(registry, service.name)
        self.metrics.ready.set_function(lambda: float(self.ready()))
        self.notifier = notifier or Notifier()
        self.stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._started = False
        self._run_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._last_checks: dict[str, bool] = {}
        self.http_port: int | None = None

    # -- health ---------------------------------------------------------------------------------

    def checks(self) -> dict[str, bool]:
        checks = {"started": self._started, "not_stopping": not self.stopping.is_set()}
        if self._started:
            checks.update(self.service.readiness())
        return checks

    def ready(self) -> bool:
        return all(self.checks().values())

    def healthy(self) -> bool:
        """The loop answers and the service's run task, once started, is still alive."""
        return self._run_task is None or not self._run_task.done()

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        healthy = self.healthy()
        return web.json_response(
            {"status": "ok" if healthy else "failed", "daemon": self.service.name},
            status=200 if healthy else 503,
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = self.checks()
        ready = all(checks.values())
        if checks != self._last_checks:
            log.info("readiness changed", ready=ready, checks=checks)
            self._last_checks = checks
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _start_http(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.settings.http_host}:{self.settings.http_port} "
                f"({exc.strerror}); set CRYPTOVIZ_HTTP_PORT to a free port"
            ) from None
        # The port actually bound (tests ask for port 0).
        self.http_port = int(runner.addresses[0][1])
        return runner

    # -- lifecycle ------------------------------------------------------------------------------

    def request_stop(self, signame: str = "request") -> None:
        if self.stopping.is_set():
            log.warning("second stop signal: cancelling without waiting", signal=signame)
            self._force.set()
            return
        log.info("stop requested", signal=signame)
        self.stopping.set()

    async def serve(self) -> int:
        """Run the whole lifecycle; return the process exit code."""
        bind(daemon=self.service.name)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signal.Signals(signum).name)
        try:
            runner = await self._start_http()
        except ConfigError as exc:
            log.error("cannot start", error=str(exc))
            return EXIT_CONFIG
        log.info(
            "daemon starting",
            version=__version__,
            http=f"{self.settings.http_host}:{self.http_port}",
        )
        try:
            code = await self._start_with_retries()
            if code is not None:
                return code
            self._started = True
            tune_gc()
            self.metrics.start_time.set(time.time())
            self.notifier.notify("READY=1", f"STATUS=running, http port {self.http_port}")
            log.info("daemon ready")
            if self.notifier.watchdog_interval_s:
                self._watchdog_task = asyncio.create_task(
                    self._watchdog(self.notifier.watchdog_interval_s)
                )
            return await self._run_until_stopped()
        finally:
            if self._watchdog_task is not None:
                self._watchdog_task.cancel()
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _start_with_retries(self) -> int | None:
        attempt = 0
        while not self.stopping.is_set():
            start = asyncio.create_task(self.service.start())
            stop_wait = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not start.done():
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await start
                break
            exc = start.exception()
            if exc is None:
                return None
            if isinstance(exc, ConfigError):
                log.error("invalid configuration", error=str(exc))
                return EXIT_CONFIG
            reason = type(exc).__name__
            self.metrics.start_failures.labels(reason).inc()
            delay = full_jitter_backoff(attempt, cap_s=START_BACKOFF_CAP_S, base_s=0.5)
            log.warning(
                "start failed, retrying",
                reason=reason,
                error=str(exc),
                attempt=attempt + 1,
                retry_in_s=round(delay, 2),
            )
            self.notifier.notify(f"STATUS=waiting for dependencies: {reason}")
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
        # Stopped before the service ever started: release what a half-done start took.
        self.notifier.notify("STOPPING=1")
        await self._stop_service(self.settings.stop_timeout_s)
        log.info("daemon stopped before it was ready")
        return EXIT_OK

    async def _run_until_stopped(self) -> int:
        self._run_task = asyncio.create_task(self.service.run(self.stopping))
        stop_wait = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({self._run_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        code = EXIT_OK
        if self._run_task.done():
            exc = self._run_task.exception()
            if exc is not None:
                log.error("service failed", exc_info=exc)
                code = EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_CRASH
            elif not self.stopping.is_set():  # else run returned because it was told to
                log.info("service finished its work")
        return await self._shutdown(code)

    async def _shutdown(self, code: int) -> int:
        started = time.monotonic()
        deadline = started + self.settings.stop_timeout_s
        self.stopping.set()
        self.notifier.notify("STOPPING=1")
        log.info("stopping", timeout_s=self.settings.stop_timeout_s)
        assert self._run_task is not None
        if not self._run_task.done():
            # Intake stops first: run() sees `stopping` and returns; wait for it within bound.
            await self._wait_or_force({self._run_task}, deadline)
            if not self._run_task.done():
                self._run_task.cancel()
                self.metrics.stop_cancelled_tasks.inc()
                log.warning("run did not return in time, cancelled")
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._run_task
        await self._stop_service(max(0.1, deadline - time.monotonic()))
        leftovers = [
            task
            for task in asyncio.all_tasks()
            # The watchdog is the runtime's own, not work the service left behind.
            if task not in (asyncio.current_task(), self._watchdog_task) and not task.done()
        ]
        for task in leftovers:
            task.cancel()
        if leftovers:
            self.metrics.stop_cancelled_tasks.inc(len(leftovers))
            log.warning("cancelled tasks left at stop", count=len(leftovers))
        log.info("daemon stopped", duration_s=round(time.monotonic() - started, 3), exit_code=code)
        return code

    async def _stop_service(self, timeout_s: float) -> None:
        stop = asyncio.create_task(self.service.stop())
        await self._wait_or_force({stop}, time.monotonic() + timeout_s)
        if not stop.done():
            stop.cancel()
            self.metrics.stop_cancelled_tasks.inc()
            log.warning("service stop did not finish in time, cancelled", timeout_s=timeout_s)
        with contextlib.suppress(asyncio.CancelledError):
            exc = await asyncio.gather(stop, return_exceptions=True)
            if exc and isinstance(exc[0], Exception):
                log.error("service stop failed", exc_info=exc[0])

    async def _wait_or_force(self, tasks: set[asyncio.Task[None]], deadline: float) -> None:
        force = asyncio.create_task(self._force.wait())
        await asyncio.wait(
            {*tasks, force},
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        force.cancel()

    async def _watchdog(self, interval_s: float) -> None:
        # Ping at half the interval; stay silent while unhealthy so systemd restarts us.
        while True:
            if self.healthy():
                self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s / 2)


def tune_gc() -> None:
    """Fewer, cheaper collections for a long-running event loop.

    Every record creates a dozen short-lived tracked objects (futures, coroutines, closures); the
    default threshold (700) runs a collection every few dozen records. What exists once the
    service has started (modules, clients, pools) lives as long as the process: freeze it out of
    every later collection.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def build_parser(
    prog: str, description: str, settings_cls: type[Settings]
) -> argparse.ArgumentParser:
    """An argument parser whose --help lists the environment variables the daemon reads."""
    variables = sorted(f"CRYPTOVIZ_{name.upper()}" for name in settings_cls.model_fields)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Configuration comes from the environment (and the file named by "
        "CRYPTOVIZ_ENV_FILE): " + ", ".join(variables) + ".",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(
    service_factory: Callable[[S, CollectorRegistry], Service],
    settings_cls: type[S],
    *,
    prog: str,
    description: str,
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
    overrides: Callable[[argparse.Namespace], dict[str, object]] | None = None,
) -> NoReturn:
    """Entry point of a daemon's console script: parse, configure, serve, exit."""
    parser = parser or build_parser(prog, description, settings_cls)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(settings_cls, **(overrides(args) if overrides else {}))
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(asyncio.run(_serve(service_factory, settings)))


async def _serve(service_factory: Callable[[S, CollectorRegistry], Service], settings: S) -> int:
    registry = CollectorRegistry()
    try:
        service = service_factory(settings, registry)
    except ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return EXIT_CONFIG
    return await Daemon(service, settings, registry).serve()
