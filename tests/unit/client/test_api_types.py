"""The client's hand-written answer types are the API's own: every TypedDict in
app/client/api.py has, field for field, the names, types and required fields of its schema in
the committed openapi/openapi.json (which tests/api/test_openapi.py holds to the app's)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import pytest
from typing_extensions import is_typeddict

from app.client import api

SPEC = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"
SCHEMAS: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]
# client type -> its schema
PAIRS: dict[type, str] = {
    api.ErrorInfo: "ErrorInfo",
    api.Progress: "JobProgress",
    api.Job: "JobOut",
    api.Target: "TargetOut",
    api.KeyAccess: "KeyAccessOut",
    api.Share: "ShareOut",
    api.Event: "EventOut",
    api.Drift: "Drift",
    api.PlannedTarget: "PlannedTargetOut",
    api.KeyPolicyChange: "KeyPolicyChangeOut",
    api.GrantChange: "GrantChangeOut",
    api.PermissionChange: "PermissionChangeOut",
    api.CopyChange: "CopyChangeOut",
    api.KeptKeyAccess: "KeptKeyAccessOut",
    api.Plan: "PlanOut",
}
PAGES: dict[str, type] = {
    "JobPage": api.Job,
    "TargetPage": api.Target,
    "SharePage": api.Share,
    "EventPage": api.Event,
}
SCALARS: dict[object, str] = {str: "string", int: "integer", bool: "boolean", float: "number"}


def schema_text(schema: dict[str, Any]) -> str:
    """A schema as a short type text: `string`, `JobProgress | null`, `array[string]`…"""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(sorted(schema_text(s) for s in schema[union]))
    kind = schema["type"]
    if kind == "array":
        return f"array[{schema_text(schema['items'])}]"
    if kind == "object":
        values = schema.get("additionalProperties", True)
        return "object" if values is True else f"object[{schema_text(values)}]"
    return str(kind)


def type_text(hint: Any, item: Any = None) -> str:
    """A Python annotation as the same type text (`item` stands for a Page's T)."""
    if isinstance(hint, TypeVar):
        return type_text(item)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(sorted(type_text(a, item) for a in args))
    if hint is type(None):
        return "null"
    if hint in SCALARS:
        return SCALARS[hint]
    if origin is Literal and all(isinstance(a, str) for a in args):
        return "string"
    if origin is list:
        return f"array[{type_text(args[0], item)}]"
    if origin is dict:
        return "object" if args[1] is Any else f"object[{type_text(args[1], item)}]"
    if is_typeddict(hint) and hint in PAIRS:
        return PAIRS[hint]
    raise AssertionError(f"no schema counterpart for {hint!r}")


def fields_of_schema(name: str) -> tuple[dict[str, str], set[str]]:
    schema = SCHEMAS[name]
    properties = {field: schema_text(s) for field, s in schema["properties"].items()}
    return properties, set(schema.get("required", []))


def fields_of_type(typed: Any, item: Any = None) -> tuple[dict[str, str], set[str]]:
    """Read from the annotations themselves: under `from __future__ import annotations`,
    Python 3.11 leaves a NotRequired out of `__required_keys__` (mypy does not)."""
    fields: dict[str, str] = {}
    required: set[str] = set()
    for name, hint in get_type_hints(typed, include_extras=True).items():
        marker = get_origin(hint)
        if marker is Required or (marker is not NotRequired and typed.__total__):
            required.add(name)
        fields[name] = type_text(
            get_args(hint)[0] if marker in (Required, NotRequired) else hint, item
        )
    return fields, required


@pytest.mark.parametrize("client_type", list(PAIRS), ids=lambda t: t.__name__)
def test_each_answer_type_is_its_schema_field_for_field(client_type: type) -> None:
    expected_fields, expected_required = fields_of_schema(PAIRS[client_type])

    fields, required = fields_of_type(client_type)

    assert fields == expected_fields, PAIRS[client_type]
    assert required == expected_required, PAIRS[client_type]


@pytest.mark.parametrize(("page", "item"), list(PAGES.items()), ids=list(PAGES))
def test_a_page_of_answers_is_its_page_schema(page: str, item: type) -> None:
    assert fields_of_type(api.Page, item) == fields_of_schema(page)


def test_every_schema_an_answer_uses_has_a_client_type() -> None:
    answers = {n for n in SCHEMAS if n.endswith(("Out", "Page"))}
    used: set[str] = set()
    todo = list(answers)
    while todo:
        text = json.dumps(SCHEMAS[todo.pop()])
        for name in SCHEMAS:
            if f'"#/components/schemas/{name}"' in text and name not in used:
                used.add(name)
                todo.append(name)

    covered = set(PAIRS.values()) | set(PAGES)
    assert answers | used == covered
