"""structlog set-up: JSON lines on stdout in production, a console renderer on a terminal.

Standard-library loggers (aiokafka, aiohttp, asyncio) go through the same processors, so every line
a daemon prints is one JSON object. Tracebacks are rendered without frame locals and values under
secret-looking keys are masked: logs must never carry a password or a DSN.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor

_SECRET_KEYS: Final = ("password", "passwd", "secret", "token", "api_key", "apikey")
MASK: Final = "***"
# The password of a user:password@ URL anywhere in a value (a library's message quoting a DSN too).
# Greedy up to the authority's last "@": a password may hold an unescaped "@".
_URL_PASSWORD: Final = re.compile(r"(://[^\s/@:]*:)[^\s/]*@")


def redact_url_passwords(text: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``, anywhere in ``text``."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Mask values whose key looks secret, and passwords inside any DSN-looking value."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_KEYS):
            event_dict[key] = MASK
        elif isinstance(value, str) and "://" in value and "@" in value:
            event_dict[key] = redact_url_passwords(value)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def configure_logging(level: str = "INFO", fmt: str = "auto", *, stream: Any = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console lines."""
    stream = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Processor
    if use_console:
        # Plain tracebacks: rich's (used when installed) would print frame locals.
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    else:
        renderer = structlog.processors.JSONRenderer()
    exceptions: list[Processor] = (
        []
        if use_console
        else [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    )

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries are chatty at INFO about every (re)connection; keep their warnings.
    for noisy in ("aiokafka", "kafka", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def bind(**values: Any) -> None:
    """Attach context (daemon name, pair, source...) to every following log line of this task."""
    structlog.contextvars.bind_contextvars(**values)
