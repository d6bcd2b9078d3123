"""Client configuration from settings, for both Kafka libraries the project uses.

One home for connection and security settings, so aiokafka (producers, consumers) and
librdkafka (the admin client) always reach the same cluster the same way. Secrets go into the
returned mappings and nowhere else: never log these dictionaries.
"""

from __future__ import annotations

import ssl
from typing import Any

from shared.settings import ConfigError, Settings


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    if not settings.kafka_security_protocol.startswith("SASL"):
        return "", ""
    if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username):
        raise ConfigError(
            f"CRYPTOVIZ_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "CRYPTOVIZ_KAFKA_SASL_MECHANISM and CRYPTOVIZ_KAFKA_SASL_USERNAME"
        )
    if settings.kafka_sasl_password is None:
        raise ConfigError("CRYPTOVIZ_KAFKA_SASL_PASSWORD is required with SASL")
    return settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()


def aiokafka_common(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by AIOKafkaProducer, AIOKafkaConsumer and the admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        try:
            context = ssl.create_default_context(
                cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
            )
            if settings.kafka_ssl_certfile:
                context.load_cert_chain(
                    str(settings.kafka_ssl_certfile),
                    str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"CRYPTOVIZ_KAFKA_SSL_*: cannot load TLS files: {exc}") from None
        kwargs["ssl_context"] = context
    username, password = _sasl_credentials(settings)
    if username:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = username
        kwargs["sasl_plain_password"] = password
    return kwargs


def librdkafka_config(settings: Settings) -> dict[str, str | int | float | bool]:
    """The same connection as a librdkafka (confluent-kafka) configuration dictionary."""
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.lower(),
        "client.id": f"{settings.kafka_client_id}-admin",
        "socket.timeout.ms": str(settings.kafka_request_timeout_ms),
        # librdkafka logs connection failures to stderr on its own; our callers report them.
        "log_level": "0",
    }
    if settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile:
        config["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
    username, password = _sasl_credentials(settings)
    if username:
        config["sasl.mechanism"] = str(settings.kafka_sasl_mechanism)
        config["sasl.username"] = username
        config["sasl.password"] = password
    return config
