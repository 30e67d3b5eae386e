"""Opaque page cursors: clients pass back what they were given, nothing else."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.service.errors import InvalidRequestError

T = TypeVar("T")


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_MAX_INT = 2**63 - 1  # a database BIGINT: a larger number is not a cursor this API gave out


def not_a_cursor() -> InvalidRequestError:
    return InvalidRequestError.of("cursor", "not a cursor this API gave out", location="query")


def decode_cursor(cursor: str | None, expect: type) -> Any:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise not_a_cursor() from error
    if expect is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise not_a_cursor()
        return tuple(value)
    # bool is an int to isinstance(); a JSON `true` was never a cursor.
    if isinstance(value, bool) or not isinstance(value, expect):
        raise not_a_cursor()
    if isinstance(value, int) and not 0 <= value <= _MAX_INT:
        raise not_a_cursor()
    return value


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(rows: Sequence[T], limit: int, position: Callable[[T], Any]) -> Page[T]:
    """A page from `limit + 1` rows read: the extra row only says that there are more, and the
    cursor is the position of the page's last row."""
    items = list(rows[:limit])
    more = len(rows) > limit and bool(items)
    return Page(items, encode_cursor(position(items[-1])) if more else None)
