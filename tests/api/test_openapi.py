"""The committed spec, openapi/openapi.json, is the app's own, and says what the app does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
STALE = "openapi/openapi.json is out of date with the app: run `make openapi` and commit it"
PROBLEM_REF = "#/components/schemas/Problem"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def app_spec() -> dict[str, Any]:
    # Building the app runs no lifespan: no database, no AWS.
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return app_spec()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_committed_spec_is_the_apps_spec(spec: dict[str, Any]) -> None:
    assert SPEC_PATH.is_file(), STALE
    committed = json.loads(SPEC_PATH.read_text(encoding="utf-8"))

    assert committed == spec, STALE


def test_committed_spec_is_written_as_the_export_writes_it(spec: dict[str, Any]) -> None:
    expected = json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    assert SPEC_PATH.read_text(encoding="utf-8") == expected, STALE


async def test_served_spec_is_the_committed_one() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://amishare.test") as client:
        response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json() == json.loads(SPEC_PATH.read_text(encoding="utf-8")), STALE


def test_every_operation_has_a_stable_operation_id(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
    ids: list[str] = [operation["operationId"] for _, _, operation in operations(spec)]

    assert len(ids) == len(set(ids)), f"operationIds repeat: {ids}"
    for operation_id in ids:
        # The route function's name; FastAPI's default (`create_job_v1_jobs_post`) would change
        # with every path or method.
        assert re.fullmatch(r"[a-z][a-z0-9_]*", operation_id), operation_id
        assert not re.search(r"_(get|post|put|patch|delete)$", operation_id), operation_id
        assert "v1" not in operation_id, operation_id
    by_route = {(method, path): op["operationId"] for method, path, op in operations(spec)}
    assert by_route[("post", "/v1/jobs")] == "create_job"
    assert by_route[("get", "/v1/jobs")] == "list_jobs"
    assert by_route[("get", "/v1/jobs/{job_id}")] == "get_job"
    assert by_route[("get", "/v1/jobs/{job_id}/targets")] == "list_targets"


def test_every_documented_error_is_problem_json(spec: dict[str, Any]) -> None:
    documented = 0
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            documented += 1
            content = response.get("content", {})
            where = f"{method.upper()} {path} {status}"
            assert set(content) == {"application/problem+json"}, where
            assert content["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}, where
    assert documented


def test_problem_schema_has_the_rfc_9457_members_and_field_errors(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    problem = schemas["Problem"]

    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "errors"}
    field_error = schemas["ProblemFieldError"]
    assert set(field_error["required"]) == {"field", "message"}
    assert set(field_error["properties"]) == {"field", "message", "location"}
    # FastAPI's own 422 body is never sent, so it must not be documented either.
    assert "HTTPValidationError" not in schemas


def test_every_v1_operation_documents_bearer_auth_and_its_errors(spec: dict[str, Any]) -> None:
    bearer = {
        name
        for name, scheme in spec["components"]["securitySchemes"].items()
        if scheme == {**scheme, "type": "http", "scheme": "bearer"}
    }
    assert bearer
    for method, path, operation in operations(spec):
        if not path.startswith("/v1/"):
            continue
        where = f"{method.upper()} {path}"
        assert any(set(entry) & bearer for entry in operation.get("security", [])), where
        assert {"401", "403", "422"} <= set(operation["responses"]), where


def test_created_job_is_documented_as_202_and_its_replay_as_200(spec: dict[str, Any]) -> None:
    responses = spec["paths"]["/v1/jobs"]["post"]["responses"]

    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobOut"
    }
    assert "200" in responses
    parameters = {p["name"] for p in spec["paths"]["/v1/jobs"]["post"].get("parameters", [])}
    assert "Idempotency-Key" in {name.title() for name in parameters}
