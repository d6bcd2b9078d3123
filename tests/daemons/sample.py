"""``python -m tests.daemons.sample``: the shared runtime around a service tests can steer.

It ticks ``cryptoviz_sample_ticks_total`` every ``CRYPTOVIZ_TICK_INTERVAL_S`` and misbehaves on
request, through variables outside the ``CRYPTOVIZ_`` namespace so no real daemon reads them:

- ``SAMPLE_FAIL_STARTS=N``: the first N calls to ``start`` raise ConnectionError;
- ``SAMPLE_NOT_READY=1``: the dependency check of ``readiness`` never holds;
- ``SAMPLE_RUN_CRASH=1``: ``run`` raises RuntimeError after a few ticks;
- ``SAMPLE_RUN_ONCE=1``: ``run`` returns after a few ticks, as a one-shot job does;
- ``SAMPLE_STOP_HANGS=1``: ``stop`` never returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field

from shared.runtime import Service, main
from shared.settings import Port, Settings

log = structlog.get_logger(__name__)

LAST_TICK: Final = 4


class SampleSettings(Settings):
    http_port: Port = 9199
    tick_interval_s: float = Field(default=0.05, gt=0)


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


class SampleService(Service):
    name = "sample"

    def __init__(self, settings: SampleSettings, registry: CollectorRegistry) -> None:
        self.interval_s = settings.tick_interval_s
        self.ticks = Counter(
            "cryptoviz_sample_ticks", "Ticks of the sample service.", registry=registry
        )
        self.fail_starts = int(os.environ.get("SAMPLE_FAIL_STARTS", "0"))
        self.not_ready = _flag("SAMPLE_NOT_READY")
        self.run_crash = _flag("SAMPLE_RUN_CRASH")
        self.run_once = _flag("SAMPLE_RUN_ONCE")
        self.stop_hangs = _flag("SAMPLE_STOP_HANGS")
        self.start_attempts = 0
        self.tick_count = 0

    async def start(self) -> None:
        self.start_attempts += 1
        if self.start_attempts <= self.fail_starts:
            raise ConnectionError(f"dependency unreachable (attempt {self.start_attempts})")
        log.info("sample started", attempts=self.start_attempts)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.ticks.inc()
            self.tick_count += 1
            if self.tick_count >= LAST_TICK:
                if self.run_crash:
                    raise RuntimeError("sample run crashed")
                if self.run_once:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)

    async def stop(self) -> None:
        if self.stop_hangs:
            log.info("sample stop hanging")
            await asyncio.Event().wait()
        log.info("sample stopped")

    def readiness(self) -> dict[str, bool]:
        return {"dependency": not self.not_ready}


if __name__ == "__main__":
    main(
        SampleService,
        SampleSettings,
        prog="cryptoviz-sample",
        description="A sample daemon for the runtime's tests.",
    )
