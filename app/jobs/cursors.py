"""Opaque page cursors: clients pass back what they were given, nothing else."""

from __future__ import annotations

import base64
import json
from typing import Any

from app.jobs.errors import InvalidRequestError


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, expect: type) -> Any:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequestError.of("cursor", "not a cursor this API gave out") from error
    if expect is tuple and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, expect):
        raise InvalidRequestError.of("cursor", "not a cursor this API gave out")
    return value
