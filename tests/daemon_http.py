"""What a test asks of a daemon it runs as a process: its HTTP endpoints, read the way a
scraper or a probe reads them."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


class DaemonHttp:
    """``/metrics`` and ``/readyz`` of a daemon listening on ``http_port``."""

    http_port: int

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.http_port}{path}") as response,
        ):
            return response.status, await response.text()

    async def metric(self, name: str, **labels: str) -> float:
        """A sample's value; 0 while the daemon does not listen yet or has no such sample."""
        try:
            _, text = await self.get("/metrics")
        except aiohttp.ClientError:
            return 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    async def ready(self) -> bool:
        try:
            status, _ = await self.get("/readyz")
        except aiohttp.ClientError:
            return False
        return status == 200
