"""``cryptoviz broker`` and ``cryptoviz postgres``: the embedded infrastructure as daemons.

Each runs its server as a child process under the shared runtime, so supervisord (or an operator's
terminal) gets the same contract as every other daemon: readiness on ``/readyz``, metrics, a clean
stop on SIGTERM, and an exit when the child dies so the supervisor restarts the pair.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Gauge

from shared.embedded.process import ChildFailed, ChildServer, port_open, tail
from shared.runtime import Service
from shared.settings import EMBEDDED_KAFKA_PORT, EMBEDDED_POSTGRES_PORT, Port, Settings

log = structlog.get_logger(__name__)

POLL_S: Final = 0.5


class BrokerSettings(Settings):
    http_port: Port = 9108
    broker_host: str = "127.0.0.1"
    broker_port: Port = EMBEDDED_KAFKA_PORT


class PostgresSettings(Settings):
    http_port: Port = 9109
    postgres_host: str = "127.0.0.1"
    postgres_port: Port = EMBEDDED_POSTGRES_PORT


class ChildServerService(Service):
    """Keeps one :class:`ChildServer` running for as long as the daemon runs."""

    def __init__(self, server: ChildServer, registry: CollectorRegistry, *, endpoint: str) -> None:
        self.server = server
        self.endpoint = endpoint
        self._up = Gauge(
            "cryptoviz_embedded_server_up",
            "1 while the embedded server process runs and accepts connections.",
            ["server"],
            registry=registry,
        )
        self._up.labels(self.name).set_function(lambda: float(self._reachable()))

    def _reachable(self) -> bool:
        return self.server.running() and port_open(self.server.host, self.server.port)

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)
        log.info(
            "embedded server running",
            server=self.name,
            endpoint=self.endpoint,
            pid=self.server.pid,
            log_file=str(self.server.log_path),
        )

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if not self.server.running():
                raise ChildFailed(
                    f"{self.server.name} exited; its log ends with:\n{tail(self.server.log_path)}"
                )
            try:
                await asyncio.wait_for(stopping.wait(), POLL_S)
            except TimeoutError:
                continue

    async def stop(self) -> None:
        code = await asyncio.to_thread(self.server.stop)
        log.info("embedded server stopped", server=self.name, exit_code=code)

    def readiness(self) -> dict[str, bool]:
        return {self.name: self._reachable()}


class BrokerService(ChildServerService):
    name = "broker"

    def __init__(self, settings: BrokerSettings, registry: CollectorRegistry) -> None:
        from shared.embedded.broker import EmbeddedBroker  # noqa: PLC0415 - optional extra

        broker = EmbeddedBroker(
            host=settings.broker_host,
            port=settings.broker_port,
            log_path=settings.data_dir / "broker.log",
        )
        super().__init__(broker, registry, endpoint=broker.bootstrap)


class PostgresService(ChildServerService):
    name = "postgres"

    def __init__(self, settings: PostgresSettings, registry: CollectorRegistry) -> None:
        from shared.embedded.postgres import EmbeddedPostgres  # noqa: PLC0415 - optional extra

        server = EmbeddedPostgres(
            settings.data_dir / "postgres",
            host=settings.postgres_host,
            port=settings.postgres_port,
        )
        super().__init__(server, registry, endpoint=server.dsn)
