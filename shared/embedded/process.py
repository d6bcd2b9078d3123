"""A supervised child server process: start it, wait until its port answers, stop it politely."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class ChildFailed(RuntimeError):
    """The child exited or never became reachable; the message quotes its log's last lines."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server started next (tests, benchmarks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ChildServer:
    """A server binary run in the foreground as our child, its output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        host: str,
        port: int,
        log_path: Path,
        user: str | None = None,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.log_path = log_path
        self.user = user
        self.env = env
        self.stop_signal = stop_signal
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the server and block until its port accepts connections."""
        if self.running():
            return
        if port_open(self.host, self.port):
            raise ChildFailed(f"{self.name}: {self.host}:{self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                user=self.user,
                # Its own process group: a Ctrl-C on our terminal must not reach it before we
                # decide to stop it.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ChildFailed(
                    f"{self.name} exited with code {self._process.returncode} at start; "
                    f"its log ({self.log_path}) ends with:\n{tail(self.log_path)}"
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ChildFailed(
            f"{self.name} did not open {self.host}:{self.port} within {timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{tail(self.log_path)}"
        )

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Signal the server, wait up to ``timeout_s``, then kill it; return its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
