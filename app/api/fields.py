"""Checked string types of the HTTP edge: AWS Regions, label keys and values, the label filter."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

from app.api.text import code_point, echo, first_unsafe
from app.domain.regions import is_known_region

# The shape of every Region botocore lists (eusc-de-east-1 included); the list itself decides.
REGION_SHAPE = r"^[a-z]{2,4}(?:-[a-z]+){1,2}-[0-9]{1,2}$"
REGION_MAX_LENGTH = 32
LABEL_KEY_MAX_LENGTH = 128
LABEL_VALUE_MAX_LENGTH = 256
MAX_LABELS = 50


def _known_region(region: str) -> str:
    if not is_known_region(region):
        raise PydanticCustomError(
            "region_unknown", "'{region}' is not a known AWS Region", {"region": echo(region)}
        )
    return region


Region = Annotated[
    str,
    StringConstraints(max_length=REGION_MAX_LENGTH, pattern=REGION_SHAPE),
    AfterValidator(_known_region),
]


def label_problem(key: str, value: str) -> str | None:
    """What is wrong with one label (None: nothing). Keys and values are shown in lists and
    terminals, so they hold no invisible or control characters."""
    if ":" in key:
        return f"label key '{echo(key)}' must not contain ':'"
    for what, text in (("key", key), ("value", value)):
        char = first_unsafe(text)
        if char is not None:
            return (
                f"label {what} '{echo(text)}' has a character that is not allowed "
                f"({code_point(char)}: control, format, separator, private-use or unassigned)"
            )
    return None


def _label_filter(label: str | None) -> str | None:
    """`key:value` (the pattern of the parameter guarantees the ':'), under the labels' rules."""
    if label is None:
        return None
    key, value = label.split(":", 1)
    if len(key) > LABEL_KEY_MAX_LENGTH or len(value) > LABEL_VALUE_MAX_LENGTH:
        message = (
            f"a label key has at most {LABEL_KEY_MAX_LENGTH} characters and a value at most "
            f"{LABEL_VALUE_MAX_LENGTH}"
        )
        raise PydanticCustomError("label_invalid", message)
    problem = label_problem(key, value)
    if problem is not None:
        raise PydanticCustomError("label_invalid", "{problem}", {"problem": problem})
    return label


LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=LABEL_KEY_MAX_LENGTH)]
LabelValue = Annotated[str, StringConstraints(max_length=LABEL_VALUE_MAX_LENGTH)]
LabelFilterCheck = AfterValidator(_label_filter)
