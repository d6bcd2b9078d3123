"""Settings: CRYPTOVIZ_* variables, an optional env file, and errors that name the variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shared.kafka_config import aiokafka_common, librdkafka_config
from shared.logs import redact_url_passwords
from shared.settings import EMBEDDED_DB_DSN, ConfigError, Settings
from shared.topics import DAY_MS, HOUR_MS, topic_specs

MakeSettings = Callable[..., Settings]


def test_defaults_point_at_the_embedded_infrastructure(make_settings: MakeSettings) -> None:
    settings = make_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.db_dsn.get_secret_value() == EMBEDDED_DB_DSN
    assert settings.kafka_idempotence is True  # Apache Kafka is the production target


def test_environment_variables_override_defaults(make_settings: MakeSettings) -> None:
    settings = make_settings(
        CRYPTOVIZ_KAFKA_BOOTSTRAP="k1:9092, k2:9093",
        CRYPTOVIZ_HTTP_PORT="9200",
        CRYPTOVIZ_LOG_LEVEL="DEBUG",
    )
    assert settings.kafka_bootstrap == "k1:9092,k2:9093"
    assert settings.http_port == 9200
    assert settings.log_level == "DEBUG"


def test_an_env_file_is_read_and_real_variables_win(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    env_file = tmp_path / "cryptoviz.env"
    env_file.write_text("CRYPTOVIZ_HTTP_PORT=9300\nCRYPTOVIZ_LOG_LEVEL=WARNING\n")
    settings = make_settings(CRYPTOVIZ_ENV_FILE=str(env_file), CRYPTOVIZ_LOG_LEVEL="ERROR")
    assert settings.http_port == 9300
    assert settings.log_level == "ERROR"


def test_a_missing_env_file_is_a_config_error(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match=r"CRYPTOVIZ_ENV_FILE=/nonexistent\.env"):
        make_settings(CRYPTOVIZ_ENV_FILE="/nonexistent.env")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CRYPTOVIZ_HTTP_PORT", "abc", "invalid setting CRYPTOVIZ_HTTP_PORT: "),
        ("CRYPTOVIZ_HTTP_PORT", "70000", "invalid setting CRYPTOVIZ_HTTP_PORT: "),
        ("CRYPTOVIZ_KAFKA_BOOTSTRAP", "localhost", "'localhost' is not host:port"),
        ("CRYPTOVIZ_LOG_LEVEL", "LOUD", "invalid setting CRYPTOVIZ_LOG_LEVEL"),
        ("CRYPTOVIZ_KAFKA_IDEMPOTENCE", "maybe", "invalid setting CRYPTOVIZ_KAFKA_IDEMPOTENCE"),
        ("CRYPTOVIZ_TOPICS__RAWQUOTE__RETENTION_MS", "1", "unknown topic(s) rawquote"),
        ("CRYPTOVIZ_TOPICS__RAWTICKER__PARTITIONS", "0", "CRYPTOVIZ_TOPICS__RAWTICKER__PARTITIONS"),
        ("CRYPTOVIZ_TOPICS", "{not json", "invalid setting CRYPTOVIZ_TOPICS: not valid JSON"),
    ],
)
def test_a_bad_value_names_the_variable(
    make_settings: MakeSettings, variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(**{variable: value})
    assert expected in str(caught.value)
    assert caught.value.exit_code == 78


def test_a_bad_dsn_is_refused_without_echoing_it(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(CRYPTOVIZ_DB_DSN="mysql://admin:hunter2@db/prices")
    assert "CRYPTOVIZ_DB_DSN" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secrets_do_not_show_in_the_settings_repr(make_settings: MakeSettings) -> None:
    settings = make_settings(
        CRYPTOVIZ_DB_DSN="postgresql://writer:hunter2@db:5432/cryptoviz",
        CRYPTOVIZ_KAFKA_SASL_PASSWORD="kafka-s3cret",
    )
    assert "hunter2" not in repr(settings)
    assert "kafka-s3cret" not in repr(settings)
    assert settings.db_dsn_redacted == "postgresql://writer:***@db:5432/cryptoviz"


def test_redaction_leaves_password_free_dsns_alone() -> None:
    assert redact_url_passwords("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url_passwords("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"


def test_topic_registry_holds_the_seed_values(make_settings: MakeSettings) -> None:
    specs = topic_specs(make_settings())
    assert {name: (s.key, s.retention_ms, s.segment_ms) for name, s in specs.items()} == {
        "rawarticle": ("website", 7 * DAY_MS, DAY_MS),
        "rawticker": ("pair", 7 * DAY_MS, HOUR_MS),
        "rawtrade": ("pair", 7 * DAY_MS, HOUR_MS),
        "rawalert": ("pair", DAY_MS, DAY_MS),
    }
    for spec in specs.values():
        assert spec.configs["cleanup.policy"] == "delete"
        assert spec.configs["compression.type"] == "lz4"
        assert spec.configs["min.insync.replicas"] == "1"
        assert (spec.partitions, spec.replication_factor) == (1, 1)


def test_topic_settings_override_the_seed(make_settings: MakeSettings) -> None:
    specs = topic_specs(
        make_settings(
            CRYPTOVIZ_TOPIC_PARTITIONS="3",
            CRYPTOVIZ_TOPIC_REPLICATION_FACTOR="3",
            CRYPTOVIZ_TOPIC_MIN_INSYNC_REPLICAS="2",
            CRYPTOVIZ_TOPICS__RAWTRADE__PARTITIONS="6",
            CRYPTOVIZ_TOPICS__RAWALERT__RETENTION_MS="3600000",
        )
    )
    assert specs["rawtrade"].partitions == 6
    assert specs["rawticker"].partitions == 3
    assert specs["rawalert"].retention_ms == HOUR_MS
    assert specs["rawticker"].configs["min.insync.replicas"] == "2"
    assert specs["rawarticle"].replication_factor == 3


def test_sasl_settings_reach_both_kafka_clients(make_settings: MakeSettings) -> None:
    settings = make_settings(
        CRYPTOVIZ_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        CRYPTOVIZ_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        CRYPTOVIZ_KAFKA_SASL_USERNAME="cryptoviz",
        CRYPTOVIZ_KAFKA_SASL_PASSWORD="pw",
    )
    aio = aiokafka_common(settings)
    assert (aio["sasl_mechanism"], aio["sasl_plain_username"], aio["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "cryptoviz",
        "pw",
    )
    rd = librdkafka_config(settings)
    assert (rd["security.protocol"], rd["sasl.mechanism"], rd["sasl.password"]) == (
        "sasl_plaintext",
        "SCRAM-SHA-512",
        "pw",
    )


def test_sasl_without_credentials_is_a_config_error(make_settings: MakeSettings) -> None:
    settings = make_settings(CRYPTOVIZ_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_KAFKA_SASL_MECHANISM"):
        aiokafka_common(settings)


def test_unreadable_tls_files_are_a_config_error(make_settings: MakeSettings) -> None:
    settings = make_settings(
        CRYPTOVIZ_KAFKA_SECURITY_PROTOCOL="SSL", CRYPTOVIZ_KAFKA_SSL_CAFILE="/nonexistent/ca.pem"
    )
    with pytest.raises(ConfigError, match="TLS"):
        aiokafka_common(settings)
