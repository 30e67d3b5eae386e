"""Input at the edge: a body limit, authentication before the body is read, errors that echo
little of their input, bounded query strings, and ETags in ASCII digits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.api.auth import Caller, TokenBook
from app.api.body_limit import MAX_BODY_BYTES, BodyLimit, BodyTooLarge
from app.config import Settings
from app.domain.regions import known_regions
from app.main import create_app
from app.sandbox.aws_double import AwsDouble
from tests.api.test_validation import NO_SUCH_IMAGE, assert_problem, valid_body
from tests.conftest import READER_TOKEN, Service, make_settings, serve

JSON = {"Content-Type": "application/json"}
SMALL = 4096  # bytes: the most a 422 about one huge value may take


def padded_to(size: int) -> bytes:
    """A valid job request of exactly `size` bytes (JSON whitespace makes up the rest)."""
    body = json.dumps(valid_body(image_id=NO_SUCH_IMAGE)).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent without Content-Length (chunked), `total` bytes of JSON whitespace."""
    yield b"{"
    sent = 1
    while sent < total:
        piece = min(size, total - sent)
        yield b" " * piece
        sent += piece


@pytest.fixture
async def anonymous(service: Service) -> httpx.AsyncClient:
    service.client.headers.pop("Authorization")
    return service.client


@pytest.fixture
async def idle(database_url: str, aws_double: AwsDouble) -> AsyncIterator[Service]:
    """The app without its worker: a job stays queued, so its ETag holds still."""
    settings = make_settings(database_url, aws_double, embedded_worker=False)
    async for client in serve(settings):
        yield Service(client, settings, aws_double)


# 1. The body limit.


async def test_body_over_1_mib_declared_up_front_is_413(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", content=padded_to(MAX_BODY_BYTES + 1), headers=JSON
    )

    body = assert_problem(response, 413)
    assert body["type"] == "urn:amishare:problem:too-large"
    assert "1048576 bytes" in body["detail"]


async def test_chunked_body_growing_past_1_mib_is_413(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", content=chunks(MAX_BODY_BYTES + 1), headers=JSON
    )

    body = assert_problem(response, 413)
    assert body["type"] == "urn:amishare:problem:too-large"
    listed = await service.client.get("/v1/jobs")
    assert listed.json()["items"] == []


async def test_body_of_exactly_1_mib_is_accepted(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", content=padded_to(MAX_BODY_BYTES), headers=JSON
    )

    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs/job-0/cancel"),
        ("POST", "/v1/jobs/job-0/retry"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/shares"),
        ("GET", "/healthz"),
    ],
)
async def test_body_limit_holds_on_every_route(service: Service, method: str, path: str) -> None:
    response = await service.client.request(
        method, path, content=b" " * (MAX_BODY_BYTES + 1), headers=JSON
    )

    assert_problem(response, 413)


async def test_body_longer_than_its_content_length_is_cut_off_at_the_limit() -> None:
    read: list[int] = []

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break

    pieces = [b"x" * 600_000, b"x" * 600_000]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}

    scope = {"type": "http", "headers": [(b"content-length", b"1000")]}
    with pytest.raises(BodyTooLarge):  # FastAPI passes it on; problems.py answers the 413
        await BodyLimit(reader)(scope, receive, _ignore)

    assert read == [600_000]


@pytest.mark.parametrize(
    ("value", "status"),
    [(b"\xb2", 204), (b"1e9", 204), (b"-1", 204), (b"  12  ", 204), (b"1" * 50, 413)],
)
async def test_odd_content_length_never_answers_500(value: bytes, status: int) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", value)]}
    await BodyLimit(app)(scope, _nothing, send)

    assert sent[0]["status"] == status


async def _ignore(message: dict[str, Any]) -> None:
    return None


async def _nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


# 2. Authentication before anything reads the body.


async def test_unauthenticated_garbage_body_is_401_not_422(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/v1/jobs", content=b"\x00{{not json", headers=JSON)

    body = assert_problem(response, 401)
    assert body["detail"] == "Missing or unknown bearer token."
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_token_with_an_invalid_body_is_401_not_422(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", json={"action": "delete"}, headers={"Authorization": "Bearer nobody-0123"}
    )

    assert_problem(response, 401)


async def test_a_token_without_the_write_scope_is_403_whatever_body_it_sends(
    service: Service,
) -> None:
    reader = {"Authorization": f"Bearer {READER_TOKEN}", **JSON}
    garbage = await service.client.post("/v1/jobs", content=b"\x00{{not json", headers=reader)
    huge = await service.client.post(
        "/v1/jobs", content=b" " * (MAX_BODY_BYTES + 1), headers=reader
    )

    for response in (garbage, huge):
        body = assert_problem(response, 403)
        assert body["detail"] == "This token lacks the 'jobs:write' scope."


async def test_unauthenticated_oversized_body_is_401_not_413(anonymous: httpx.AsyncClient) -> None:
    declared = await anonymous.post("/v1/jobs", content=b" " * (MAX_BODY_BYTES + 1), headers=JSON)
    chunked = await anonymous.post("/v1/jobs", content=chunks(2 * MAX_BODY_BYTES), headers=JSON)

    for response in (declared, chunked):
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unauthenticated_request_to_any_v1_path_is_401(anonymous: httpx.AsyncClient) -> None:
    for path in ("/v1", "/v1/", "/v1/no-such-thing", "/v1/jobs/job-0/targets"):
        assert_problem(await anonymous.get(path), 401)


async def test_operations_routes_need_no_token_whatever_the_body(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        response = await anonymous.request("GET", path, content=b"junk", headers=JSON)

        assert response.status_code == 200, (path, response.text)


async def test_token_is_identified_once_per_request(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    identify = TokenBook.identify

    def counted(book: TokenBook, presented: str) -> Caller | None:
        seen.append(presented)
        return identify(book, presented)

    monkeypatch.setattr(TokenBook, "identify", counted)
    created = await service.post_job(image_id=NO_SUCH_IMAGE, account_ids=["222222222222"])
    polled = await service.client.get(f"/v1/jobs/{created.json()['id']}")

    assert (created.status_code, polled.status_code) == (202, 200)
    assert len(seen) == 2


async def test_scope_is_still_checked_after_authentication(service: Service) -> None:
    headers = {"Authorization": f"Bearer {READER_TOKEN}"}
    response = await service.client.post(
        "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE), headers=headers
    )

    body = assert_problem(response, 403)
    assert "jobs:write" in body["detail"]


def test_openapi_security_scheme_is_the_http_bearer_one() -> None:
    spec = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()

    schemes = spec["components"]["securitySchemes"]
    assert list(schemes) == ["HTTPBearer"]
    assert schemes["HTTPBearer"]["type"] == "http"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1"):
                assert operation["security"] == [{"HTTPBearer": []}], path


async def test_without_the_middleware_a_v1_route_is_still_401(aws_double: AwsDouble) -> None:
    """ScopedBearer trusts only a caller the middleware identified, never a header itself."""
    settings = make_settings("sqlite+aiosqlite:///:memory:", aws_double, embedded_worker=False)
    app = create_app(settings)
    app.user_middleware.clear()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://amishare.test") as c:
            response = await c.get("/v1/jobs", headers={"Authorization": f"Bearer {READER_TOKEN}"})

    assert_problem(response, 401)


# 3. Echoed input is cut short.


async def test_huge_bad_image_id_gets_a_small_422(service: Service) -> None:
    huge = "ami-" + "z" * 1_000_000

    response = await service.client.post("/v1/jobs", json=valid_body(image_id=huge))

    body = assert_problem(response, 422, "image_id")
    assert len(response.content) < SMALL
    message = next(e["message"] for e in body["errors"] if e["field"] == "image_id")
    assert message == f"'ami-{'z' * 36}…' is not a valid value"


async def test_huge_unknown_field_name_gets_a_small_422(service: Service) -> None:
    response = await service.client.post("/v1/jobs", json=valid_body(**{"k" * 1_000_000: 1}))

    body = assert_problem(response, 422, "k" * 40 + "…")
    assert len(response.content) < SMALL
    assert len(body["detail"]) < 200


async def test_echoed_control_characters_are_shown_escaped(service: Service) -> None:
    response = await service.client.post("/v1/jobs", json=valid_body(image_id="\x1b[2J\u202eami"))

    body = assert_problem(response, 422, "image_id")
    assert "\x1b" not in body["detail"] and "\u202e" not in body["detail"]
    assert "'\\x1b[2J\\u202eami' is not a valid value" in body["detail"]


async def test_field_name_with_a_lone_surrogate_is_a_422_naming_the_body(
    service: Service,
) -> None:
    body = json.dumps(valid_body(**{"\ud800x": 1}))  # ASCII escapes: a surrogate can be sent

    response = await service.client.post("/v1/jobs", content=body, headers=JSON)

    assert_problem(response, 422, "body")


async def test_many_bad_fields_are_named_up_to_a_bound(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", json=valid_body(labels={f"k{i}": 1 for i in range(50)}, **{"x" * 50: 1})
    )

    body = assert_problem(response, 422)
    assert len(body["errors"]) == 50
    assert body["detail"].endswith("; and 1 more")


async def test_50_000_bad_labels_are_one_error(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", json=valid_body(labels={f"k{i}": 1 for i in range(50_000)})
    )

    body = assert_problem(response, 422, "labels")
    assert len(body["errors"]) == 1
    assert "at most 50 labels" in body["detail"]


# 4. Every string query parameter is bounded.


def test_every_string_query_parameter_has_a_max_length() -> None:
    spec = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
    checked = []

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                for variant in schema.get("anyOf", [schema]):
                    if variant.get("type") == "string" and "enum" not in variant:
                        where = f"{method.upper()} {path} {parameter['name']}"
                        assert "maxLength" in variant, where
                        checked.append(where)
    assert "GET /v1/shares region" in checked
    assert "GET /v1/shares image_id" in checked


@pytest.mark.parametrize("name", ["image_id", "region", "principal", "cursor"])
async def test_long_share_query_is_422_naming_the_parameter(service: Service, name: str) -> None:
    response = await service.client.get("/v1/shares", params={name: "a" * 600})

    body = assert_problem(response, 422, name)
    assert len(response.content) < SMALL, body


# 7. ETags are read in ASCII digits only.


@pytest.mark.parametrize("tag", ['"v\xb2"', '"v1\xb9"', 'W/"v\xb3"', '"v"', '"v-1"', '"v1 "'])
async def test_if_none_match_with_odd_digits_is_answered_normally(idle: Service, tag: str) -> None:
    created = await idle.post_job(image_id=NO_SUCH_IMAGE, account_ids=["222222222222"])
    job_id = created.json()["id"]
    etag = created.headers["ETag"]

    # Sent as Latin-1, as a client may: '\xb2' arrives as '²', which str.isdigit() takes.
    other = await idle.client.get(
        f"/v1/jobs/{job_id}", headers={"If-None-Match": tag.encode("latin-1")}
    )
    both = await idle.client.get(
        f"/v1/jobs/{job_id}", headers={"If-None-Match": f"{tag}, {etag}".encode("latin-1")}
    )

    assert other.status_code == 200, other.text
    assert other.json()["id"] == job_id
    assert other.headers["ETag"] == etag
    assert both.status_code == 304, both.text


async def test_if_none_match_with_a_huge_version_is_answered_normally(idle: Service) -> None:
    created = await idle.post_job(image_id=NO_SUCH_IMAGE, account_ids=["222222222222"])

    response = await idle.client.get(
        f"/v1/jobs/{created.json()['id']}", headers={"If-None-Match": '"v' + "9" * 1000 + '"'}
    )

    assert response.status_code == 200, response.text


# 8. Regions are the ones botocore lists.


async def test_unknown_region_in_the_share_list_is_422(service: Service) -> None:
    response = await service.client.get("/v1/shares", params={"region": "zz-fake-9"})

    body = assert_problem(response, 422, "region")
    assert "not a known AWS Region" in body["detail"]


async def test_every_region_botocore_lists_is_accepted(service: Service) -> None:
    for region in known_regions():
        response = await service.client.get("/v1/shares", params={"region": region})

        assert response.status_code == 200, (region, response.text)
