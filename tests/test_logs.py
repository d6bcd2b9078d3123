"""Logging (shared.logs): one JSON object per line from every logger, and no secrets in any line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from shared.logs import MASK, bind, configure_logging

# Loggers configure_logging quietens: their levels are restored after each test.
QUIETENED = ("aiokafka", "kafka", "aiohttp.access")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
SECRET = "s3cr3t-value"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIETENED}
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


Capture = Callable[..., io.StringIO]


@pytest.fixture
def capture() -> Capture:
    """Configure logging into a fresh buffer and return the buffer."""

    def configure(level: str = "INFO", fmt: str = "json") -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, fmt, stream=stream)
        return stream

    return configure


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(line, dict) for line in parsed)
    return parsed


def fail_holding_a_secret() -> None:
    password = SECRET  # what a frame-locals renderer would print
    raise ValueError(f"cannot connect ({len(password)} chars of password)")


def test_structlog_lines_are_json_objects_one_per_line(capture: Capture) -> None:
    stream = capture()

    structlog.get_logger("cryptoviz.test").info("tick", pair="BTC/EUR", price=1.5)
    structlog.get_logger("cryptoviz.test").warning("late", lag_s=3)

    first, second = json_lines(stream)
    assert first["event"] == "tick"
    assert (first["pair"], first["price"]) == ("BTC/EUR", 1.5)
    assert (first["level"], first["logger"]) == ("info", "cryptoviz.test")
    assert first["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert (second["event"], second["level"]) == ("late", "warning")


def test_stdlib_loggers_print_the_same_json_lines(capture: Capture) -> None:
    stream = capture()

    logging.getLogger("aiokafka").warning("broker %s unreachable", "k1:9092")

    [line] = json_lines(stream)
    assert line["event"] == "broker k1:9092 unreachable"
    assert (line["level"], line["logger"]) == ("warning", "aiokafka")
    assert "timestamp" in line


def test_bound_context_is_on_every_line_whichever_the_logger(capture: Capture) -> None:
    stream = capture()
    bind(daemon="kraken")

    structlog.get_logger("cryptoviz.test").info("from structlog")
    logging.getLogger("aiohttp.server").error("from the standard library")

    assert [line["daemon"] for line in json_lines(stream)] == ["kraken", "kraken"]


def test_the_level_filters_lines_and_client_libraries_stay_at_warning(capture: Capture) -> None:
    stream = capture("DEBUG")

    structlog.get_logger("cryptoviz.test").debug("ours")
    logging.getLogger("aiokafka.conn").info("connected to k1:9092")
    logging.getLogger("aiokafka.conn").warning("connection lost")

    assert [line["event"] for line in json_lines(stream)] == ["ours", "connection lost"]


def test_lines_below_the_level_are_dropped(capture: Capture) -> None:
    stream = capture("WARNING")

    structlog.get_logger("cryptoviz.test").info("chatter")
    logging.getLogger("asyncio").info("chatter")
    structlog.get_logger("cryptoviz.test").warning("kept")

    assert [line["event"] for line in json_lines(stream)] == ["kept"]


@pytest.mark.parametrize(
    "key", ["password", "db_password", "api_token", "client_secret", "API_KEY", "sasl_passwd"]
)
def test_values_under_secret_looking_keys_are_masked(capture: Capture, key: str) -> None:
    stream = capture()

    structlog.get_logger("cryptoviz.test").info("connecting", user="cryptoviz", **{key: SECRET})

    [line] = json_lines(stream)
    assert line[key] == MASK
    assert line["user"] == "cryptoviz"
    assert SECRET not in stream.getvalue()


def test_a_dsn_value_has_its_password_replaced(capture: Capture) -> None:
    stream = capture()

    structlog.get_logger("cryptoviz.test").info("pool open", target="postgresql://u:pw@h/db")

    [line] = json_lines(stream)
    assert line["target"] == f"postgresql://u:{MASK}@h/db"


def test_a_dsn_inside_a_library_message_has_its_password_replaced(capture: Capture) -> None:
    stream = capture()

    logging.getLogger("asyncpg").warning(
        "retrying postgresql://u:%s@db.internal:5432/cryptoviz in 1 s", SECRET
    )

    [line] = json_lines(stream)
    assert line["event"] == f"retrying postgresql://u:{MASK}@db.internal:5432/cryptoviz in 1 s"


def test_urls_without_a_password_are_left_alone(capture: Capture) -> None:
    stream = capture()
    urls = {
        "dsn": "postgresql://cryptoviz@127.0.0.1:55432/cryptoviz",
        "feed": "https://example.com/rss?from=news@example.com",
    }

    structlog.get_logger("cryptoviz.test").info("sources", **urls)

    [line] = json_lines(stream)
    assert {key: line[key] for key in urls} == urls


def test_exceptions_are_structured_tracebacks_without_frame_locals(capture: Capture) -> None:
    stream = capture()

    try:
        fail_holding_a_secret()
    except ValueError:
        structlog.get_logger("cryptoviz.test").exception("write failed")

    [line] = json_lines(stream)
    assert (line["event"], line["level"]) == ("write failed", "error")
    [error] = line["exception"]
    assert error["exc_type"] == "ValueError"
    assert [frame["name"] for frame in error["frames"]][-1] == "fail_holding_a_secret"
    assert all("locals" not in frame for frame in error["frames"])
    assert SECRET not in stream.getvalue()


def test_stdlib_exceptions_are_structured_without_frame_locals_too(capture: Capture) -> None:
    stream = capture()

    try:
        fail_holding_a_secret()
    except ValueError:
        logging.getLogger("aiokafka").exception("send failed")

    [line] = json_lines(stream)
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert SECRET not in stream.getvalue()


def test_console_format_prints_readable_lines_with_the_same_masking(capture: Capture) -> None:
    stream = capture(fmt="console")

    structlog.get_logger("cryptoviz.test").info("tick", pair="BTC/EUR", password=SECRET)
    try:
        fail_holding_a_secret()
    except ValueError:
        structlog.get_logger("cryptoviz.test").exception("write failed")

    text = ANSI_ESCAPE.sub("", stream.getvalue())
    first = text.splitlines()[0]
    assert "tick" in first
    assert "pair=BTC/EUR" in first
    assert f"password={MASK}" in first
    assert "Traceback (most recent call last)" in text
    assert "ValueError: cannot connect" in text
    assert SECRET not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_auto_format_writes_json_when_not_on_a_terminal(capture: Capture) -> None:
    stream = capture(fmt="auto")

    structlog.get_logger("cryptoviz.test").info("tick")

    assert json_lines(stream)[0]["event"] == "tick"
