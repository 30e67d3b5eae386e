"""Log lines: one event is one line whatever its message and fields hold, and JSON lines stay
JSON."""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any

from app.logs import JsonFormatter, TextFormatter, one_line

# A forged second event, a carriage return that hides the first, and terminal escapes.
HOSTILE = "job done\nINFO    app.api: token accepted\r\x1b[2Kfine\x07\u2028\u0085end"


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "app.test", "levelname": "INFO", "msg": message})
    made.__dict__.update(extra)
    return made


def failing_record() -> logging.LogRecord:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        made = record("it failed")
        made.exc_info = sys.exc_info()
    return made


def assert_one_printable_line(line: str) -> None:
    assert len(line.splitlines()) == 1, line
    assert line.isprintable(), repr(line)


class TestText:
    def test_control_characters_in_the_message_are_escaped(self) -> None:
        line = TextFormatter().format(record(HOSTILE))

        assert_one_printable_line(line)
        assert "job done\\nINFO    app.api: token accepted\\r\\x1b[2Kfine\\x07" in line
        assert line.endswith("\\u2028\\x85end")

    def test_control_characters_in_every_extra_field_are_escaped(self) -> None:
        line = TextFormatter().format(
            record(principal=HOSTILE, count=3, nested={"k": "a\nb"}, **{"odd\nkey": "v"})
        )

        assert_one_printable_line(line)
        assert " count=3" in line
        assert " nested={'k': 'a\\nb'}" in line
        assert " odd\\nkey=v" in line

    def test_the_arguments_of_a_message_are_escaped_too(self) -> None:
        made = record("asked for %s")
        made.args = ("job\n-1",)

        assert TextFormatter().format(made) == "INFO    app.test: asked for job\\n-1"

    def test_a_traceback_stays_on_the_line_of_its_event(self) -> None:
        line = TextFormatter().format(failing_record())

        assert_one_printable_line(line)
        assert "it failed exception=Traceback (most recent call last):\\n" in line
        assert "ValueError: bad\\nvalue" in line

    def test_uvicorns_colour_copy_of_the_message_is_never_printed(self) -> None:
        line = TextFormatter().format(
            record("GET / 200", color_message="\x1b[1mGET\x1b[0m / 200", client="127.0.0.1")
        )

        assert line == "INFO    app.test: GET / 200 client=127.0.0.1"

    def test_a_plain_event_is_unchanged(self) -> None:
        assert TextFormatter().format(record("claimed", job_id="job-1")) == (
            "INFO    app.test: claimed job_id=job-1"
        )


class TestJson:
    def test_each_event_is_one_line_of_json_with_its_text_intact(self) -> None:
        line = JsonFormatter().format(record(HOSTILE, principal=HOSTILE))

        assert_one_printable_line(line)
        event = json.loads(line)
        assert event["message"] == HOSTILE and event["principal"] == HOSTILE

    def test_uvicorns_colour_copy_of_the_message_is_left_out(self) -> None:
        event = json.loads(JsonFormatter().format(record("GET /", color_message="\x1b[1mGET")))

        assert "color_message" not in event

    def test_a_traceback_is_one_field(self) -> None:
        line = JsonFormatter().format(failing_record())

        assert_one_printable_line(line)
        assert "ValueError: bad\nvalue" in json.loads(line)["exception"]

    def test_values_json_cannot_hold_still_give_valid_json(self) -> None:
        line = JsonFormatter().format(record("odd", ratio=math.nan, by_pair={(1, 2): "x"}))

        event = json.loads(line)  # strict: NaN is not JSON
        assert event["ratio"] == "nan"
        assert event["by_pair"] == "{(1, 2): 'x'}"
        assert event["message"] == "odd"


def test_one_line_leaves_printable_text_alone() -> None:
    assert one_line("ami-0123 → 222222222222 ok") == "ami-0123 → 222222222222 ok"
    assert one_line(42) == "42"
    assert one_line("\t\x00\U000e0001") == "\\t\\x00\\U000e0001"
