"""Logging: one event per line, JSON when AMISHARE_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# What the current task is working on: every log line of job work carries it.
_job_id: ContextVar[str | None] = ContextVar("amishare_job_id", default=None)
_destination: ContextVar[str | None] = ContextVar("amishare_destination", default=None)


def bind_job(job_id: str) -> None:
    """From here on, this task's log lines (and its child tasks') carry `job_id`. A task runs
    in its own copy of the context, so this ends with the task."""
    _job_id.set(job_id)


@contextmanager
def destination_context(principal: str) -> Iterator[None]:
    token = _destination.set(principal)
    try:
        yield
    finally:
        _destination.reset(token)


class WorkContextFilter(logging.Filter):
    """Adds `job_id` and `destination` from the task's context to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("job_id", _job_id), ("destination", _destination)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too,
# except uvicorn's `color_message`: the message again, with ANSI escapes.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NOT_LOGGED = _STANDARD | {"color_message"}
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _NOT_LOGGED}


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(value: object) -> str:
    """`value` as text with every unprintable character escaped (`\\n`, `\\x1b`, `\\u2028`),
    so that whatever a value holds, it can neither end the line nor drive the terminal."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(event, default=str, allow_nan=False)
        except (TypeError, ValueError):  # NaN, a key that is not text, a cycle: fields as text
            return json.dumps({k: v if isinstance(v, str) else str(v) for k, v in event.items()})


class TextFormatter(logging.Formatter):
    """One event, one line: the message, each extra field and a traceback are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{one_line(record.levelname):<7} {one_line(record.name)}: "]
        parts.append(one_line(record.getMessage()))
        parts += [f" {one_line(k)}={one_line(v)}" for k, v in _extras(record).items()]
        if record.exc_info:
            parts.append(" exception=" + one_line(self.formatException(record.exc_info)))
        if record.stack_info:
            parts.append(" stack=" + one_line(self.formatStack(record.stack_info)))
        return "".join(parts)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(WorkContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
