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


# Attributes every LogRecord has; anything else was passed with `extra=` and is logged too.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


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
        return json.dumps(event, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(WorkContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
