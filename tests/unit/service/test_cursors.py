"""Page cursors are opaque: what the API gave out comes back as it was, and anything else is a
422 naming the cursor, never a 500 or a page from somewhere else."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.service.cursors import decode_cursor, encode_cursor, page_of
from app.service.errors import InvalidRequestError


def raw(text: str | bytes) -> str:
    """What a client could send: any bytes, base64url without padding."""
    data = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        (0, int),
        (1, int),
        (2**63 - 1, int),
        ("job-0123", str),
        ("ünïcode ☕", str),
        (("ami-0123", "us-east-1", "222222222222"), tuple),
        ((), tuple),
    ],
)
def test_a_cursor_given_out_decodes_to_what_it_was(value: Any, expect: type) -> None:
    cursor = encode_cursor(list(value) if isinstance(value, tuple) else value)

    assert "=" not in cursor and cursor.isascii()
    assert decode_cursor(cursor, expect) == value


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor(None, int) is None


@pytest.mark.parametrize(
    ("cursor", "expect"),
    [
        pytest.param("never-given-out", int, id="made-up"),
        pytest.param("", int, id="empty"),
        pytest.param("!!!!", int, id="not-base64"),
        pytest.param(raw(b"\xff\xfe"), int, id="not-utf-8"),
        pytest.param(raw("{"), int, id="not-json"),
        pytest.param(raw("true"), int, id="a-boolean-for-a-number"),
        pytest.param(raw("1.5"), int, id="a-float"),
        pytest.param(raw("-1"), int, id="negative"),
        pytest.param(raw(str(2**63)), int, id="beyond-bigint"),
        pytest.param(raw('"7"'), int, id="a-string-for-a-number"),
        pytest.param(raw("7"), str, id="a-number-for-a-string"),
        pytest.param(raw('["a", 1]'), tuple, id="a-list-not-all-strings"),
        pytest.param(raw('{"a": "b"}'), tuple, id="an-object-for-a-list"),
        pytest.param(raw('"abc"'), tuple, id="a-string-for-a-list"),
    ],
)
def test_anything_else_is_refused_naming_the_cursor(cursor: str, expect: type) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        decode_cursor(cursor, expect)

    [error] = raised.value.errors
    assert (error.field, error.location) == ("cursor", "query")
    assert error.message == "not a cursor this API gave out"


def test_a_full_page_and_one_more_row_has_a_cursor_at_its_last_row() -> None:
    page = page_of([10, 20, 30, 40], 3, position=lambda row: row)

    assert page.items == [10, 20, 30]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, int) == 30


@pytest.mark.parametrize("rows", [[10, 20, 30], [10], []])
def test_the_last_page_has_no_cursor(rows: list[int]) -> None:
    page = page_of(rows, 3, position=lambda row: row)

    assert page.items == rows
    assert page.next_cursor is None


def test_the_cursor_is_the_position_of_the_last_row_in_the_shape_given() -> None:
    rows = [{"id": i, "key": ["ami", f"p{i}"]} for i in range(3)]

    page = page_of(rows, 2, position=lambda row: row["key"])

    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, tuple) == ("ami", "p1")
    assert json.loads(base64.urlsafe_b64decode(page.next_cursor + "==")) == ["ami", "p1"]
