"""Settings shared by every CRYPTO VIZ process, read from ``CRYPTOVIZ_*`` environment variables.

An optional env file (``CRYPTOVIZ_ENV_FILE``) is read first; real environment variables win over it.
Settings are validated once, at start: a bad value stops the process with a message that names the
environment variable, never with a traceback (see :func:`load_settings`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from shared.logs import redact_url_passwords

ENV_PREFIX = "CRYPTOVIZ_"
ENV_FILE_VARIABLE = "CRYPTOVIZ_ENV_FILE"

# The embedded development infrastructure listens here; the defaults below point at it, so a
# machine with nothing configured runs the whole pipeline on `cryptoviz broker` and
# `cryptoviz postgres`. Production overrides both.
EMBEDDED_KAFKA_PORT = 9092
EMBEDDED_POSTGRES_PORT = 55432
EMBEDDED_DB_DSN = f"postgresql://cryptoviz@127.0.0.1:{EMBEDDED_POSTGRES_PORT}/cryptoviz"

Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(Exception):
    """A configuration problem an operator must fix; daemons exit with EX_CONFIG (78) on it."""

    exit_code = 78


class TopicOverride(BaseModel):
    """Per-topic overrides of the seed defaults (``CRYPTOVIZ_TOPICS__RAWTICKER__RETENTION_MS``)."""

    partitions: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    retention_ms: int | None = Field(default=None, ge=-1)
    segment_ms: int | None = Field(default=None, ge=1)


def _default_data_dir() -> Path:
    # Root is a service account here: follow systemd's StateDirectory= convention.
    if os.geteuid() == 0:
        return Path("/var/lib/cryptoviz")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cryptoviz"


class Settings(BaseSettings):
    """What every daemon and the CLI need; daemons subclass it with their own settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    # Kafka
    kafka_bootstrap: str = f"127.0.0.1:{EMBEDDED_KAFKA_PORT}"
    kafka_idempotence: bool = True
    kafka_client_id: str = "cryptoviz"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1_000)
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_max_pending: int = Field(default=10_000, ge=1)
    kafka_max_message_bytes: int = Field(default=1_048_576, ge=1_024)

    # Topics: seed defaults live in shared.topics; these override them.
    topic_partitions: int = Field(default=1, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    topics: dict[str, TopicOverride] = Field(default_factory=dict)

    # Database
    db_dsn: SecretStr = SecretStr(EMBEDDED_DB_DSN)

    # Runtime
    http_host: str = "127.0.0.1"
    http_port: Port = 9100
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    stop_timeout_s: float = Field(default=20.0, gt=0, le=300)
    data_dir: Path = Field(default_factory=_default_data_dir)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_port_list(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("needs at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("db_dsn")
    @classmethod
    def _dsn_is_postgres_url(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            # Never echo the DSN: it may carry a password.
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("topics")
    @classmethod
    def _topics_are_known(cls, value: dict[str, TopicOverride]) -> dict[str, TopicOverride]:
        from shared.envelope import PAYLOADS  # noqa: PLC0415 - settings load before topics

        unknown = sorted(set(value) - set(PAYLOADS))
        if unknown:
            raise ValueError(f"unknown topic(s) {', '.join(unknown)}; known: {', '.join(PAYLOADS)}")
        return value

    @property
    def db_dsn_redacted(self) -> str:
        """The DSN with any password replaced, for logs and error messages."""
        return redact_url_passwords(self.db_dsn.get_secret_value())


S = TypeVar("S", bound=Settings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read and validate settings; raise :class:`ConfigError` naming every bad variable.

    ``overrides`` (command-line flags) win over the environment, which wins over the env file.
    """
    env_file = os.environ.get(ENV_FILE_VARIABLE)
    if env_file and not Path(env_file).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE}={env_file} does not name a readable file")
    try:
        return cls(_env_file=env_file or None, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, cls)) from None
    except SettingsError as exc:
        # A complex setting (a mapping or list) whose value is not JSON.
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a CRYPTOVIZ_* variable"
        raise ConfigError(f"invalid setting {name}: not valid JSON") from None


_SECRET_WORDS = ("password", "dsn", "secret", "token", "key")


def describe_validation_error(exc: ValidationError, cls: type[BaseSettings]) -> str:
    prefix = str(cls.model_config.get("env_prefix", ENV_PREFIX))
    lines = []
    for error in exc.errors(include_url=False):
        path = "__".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        # Echo what was given, unless the setting may hold a secret.
        if "input" in error and not any(word in path.lower() for word in _SECRET_WORDS):
            message += f" (got {error['input']!r})"
        lines.append(f"invalid setting {prefix}{path.upper()}: {message}")
    return "; ".join(lines)
