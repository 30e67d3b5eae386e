"""Bearer tokens with scopes (docs/api.md, "Authentication")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import pytest

from app.api.auth import Caller, TokenBook
from app.config import ApiToken, Settings
from app.main import create_app
from tests.api.test_validation import NO_SUCH_IMAGE, assert_problem, valid_body
from tests.conftest import READER_TOKEN, WRITER_TOKEN, Service, make_settings, serve

HASHED_TOKEN = "a-token-only-its-digest-is-configured"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def other_app(service: Service, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app again, on the same database, with other settings (no worker, no token sent)."""
    settings = make_settings(
        service.settings.database_url, service.double, embedded_worker=False, **overrides
    )
    clients = serve(settings)
    client = await anext(clients)
    client.headers.pop("Authorization")
    try:
        yield client
    finally:
        with suppress(StopAsyncIteration):  # the app's lifespan ends, its gateway closes
            await anext(clients)


def v1_calls() -> list[tuple[str, str]]:
    """(method, path) of every /v1 operation the app has, path parameters filled in."""
    paths = create_app(Settings(api_tokens=[])).openapi()["paths"]
    calls = [
        (method.upper(), path.replace("{job_id}", "job-0"))
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    ]
    assert calls
    return calls


async def test_request_without_a_bearer_token_is_401(service: Service) -> None:
    client = service.client
    client.headers.pop("Authorization")
    without_token = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {WRITER_TOKEN}"},
        {"Authorization": WRITER_TOKEN},
    ]

    for headers in without_token:
        for response in (
            await client.get("/v1/jobs", headers=headers),
            await client.post("/v1/jobs", json=valid_body(), headers=headers),
        ):
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_token_is_401(service: Service) -> None:
    for token in ("not-a-token-of-this-service", WRITER_TOKEN + "x", WRITER_TOKEN.upper()):
        response = await service.client.get("/v1/jobs", headers=bearer(token))

        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_reader_token_cannot_create_a_job(service: Service) -> None:
    response = await service.client.post(
        "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE), headers=bearer(READER_TOKEN)
    )

    body = assert_problem(response, 403)
    assert "jobs:write" in body["detail"]
    listed = await service.client.get("/v1/jobs")
    assert listed.json()["items"] == []


async def test_reader_token_can_read_jobs(service: Service) -> None:
    created = await service.post_job(image_id=NO_SUCH_IMAGE, account_ids=["222222222222"])
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    for path in ("/v1/jobs", f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/targets"):
        response = await service.client.get(path, headers=bearer(READER_TOKEN))

        assert response.status_code == 200, (path, response.text)


async def test_token_configured_by_its_sha256_is_accepted(service: Service) -> None:
    digest = hashlib.sha256(HASHED_TOKEN.encode()).hexdigest()
    tokens = [ApiToken(name="hashed", sha256=digest, scopes=["jobs:read", "jobs:write"])]
    async with other_app(service, api_tokens=tokens) as client:
        created = await client.post(
            "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE), headers=bearer(HASHED_TOKEN)
        )
        listed = await client.get("/v1/jobs", headers=bearer(HASHED_TOKEN))
        by_digest = await client.get("/v1/jobs", headers=bearer(digest))

    assert created.status_code == 202, created.text
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()["items"]] == [created.json()["id"]]
    assert_problem(by_digest, 401)  # the digest itself is not a token


async def test_operations_routes_need_no_token(service: Service) -> None:
    service.client.headers.pop("Authorization")

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        response = await service.client.get(path)

        assert response.status_code == 200, (path, response.text)


async def test_without_configured_tokens_every_v1_call_is_401(service: Service) -> None:
    async with other_app(service, api_tokens=[]) as client:
        for method, path in v1_calls():
            for headers in ({}, bearer(WRITER_TOKEN), bearer(READER_TOKEN)):
                response = await client.request(method, path, headers=headers, json=valid_body())

                assert_problem(response, 401)
        assert (await client.get("/healthz")).status_code == 200


def test_api_tokens_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(HASHED_TOKEN.encode()).hexdigest()
    entries = [
        {"name": "ci", "token": WRITER_TOKEN, "scopes": ["jobs:read", "jobs:write"]},
        {"name": "dashboard", "sha256": digest, "scopes": ["jobs:read"]},
    ]
    monkeypatch.setenv("AMISHARE_API_TOKENS", json.dumps(entries))

    book = TokenBook(Settings().api_tokens)

    assert book.identify(WRITER_TOKEN) == Caller("ci", frozenset({"jobs:read", "jobs:write"}))
    assert book.identify(HASHED_TOKEN) == Caller("dashboard", frozenset({"jobs:read"}))


def test_a_tokens_own_allowed_lists_are_carried_by_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = [
        {
            "name": "team-a",
            "token": WRITER_TOKEN,
            "scopes": ["jobs:write"],
            "sources": ["123456789012"],
            "destinations": ["2222*", "arn:aws:organizations::111111111111:ou/o-abcdefghij/*"],
        },
        {"name": "reader", "token": READER_TOKEN, "scopes": ["jobs:read"]},
    ]
    monkeypatch.setenv("AMISHARE_API_TOKENS", json.dumps(entries))

    book = TokenBook(Settings().api_tokens)
    limited, unlimited = book.identify(WRITER_TOKEN), book.identify(READER_TOKEN)

    assert limited is not None and unlimited is not None
    assert limited.sources.texts == ["123456789012"]
    assert limited.destinations.texts == entries[0]["destinations"]
    assert limited.sources.allows("123456789012")
    assert not limited.sources.allows("123456789013")
    assert not unlimited.sources.restricted and not unlimited.destinations.restricted


class TestTokenBook:
    def book(self) -> TokenBook:
        return TokenBook(
            [
                ApiToken(name="writer", token=WRITER_TOKEN, scopes=["jobs:read", "jobs:write"]),
                ApiToken(name="reader", token=READER_TOKEN, scopes=["jobs:read"]),
                ApiToken(
                    name="hashed",
                    sha256=hashlib.sha256(HASHED_TOKEN.encode()).hexdigest().upper(),
                    scopes=[],
                ),
            ]
        )

    def test_plain_token_names_its_caller_and_scopes(self) -> None:
        assert self.book().identify(WRITER_TOKEN) == Caller(
            "writer", frozenset({"jobs:read", "jobs:write"})
        )
        assert self.book().identify(READER_TOKEN) == Caller("reader", frozenset({"jobs:read"}))

    def test_hashed_token_is_matched_by_its_digest_in_any_case(self) -> None:
        assert self.book().identify(HASHED_TOKEN) == Caller("hashed", frozenset())

    def test_unknown_token_is_nobody(self) -> None:
        book = self.book()
        assert book.identify("") is None
        assert book.identify(WRITER_TOKEN[:-1]) is None
        assert book.identify(hashlib.sha256(HASHED_TOKEN.encode()).hexdigest()) is None

    def test_empty_book_knows_nobody(self) -> None:
        assert TokenBook([]).identify(WRITER_TOKEN) is None

    def test_token_entry_needs_exactly_one_secret(self) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            ApiToken(name="neither", scopes=["jobs:read"])
        with pytest.raises(ValueError, match="exactly one"):
            ApiToken(name="both", token=WRITER_TOKEN, sha256="0" * 64, scopes=["jobs:read"])

    def test_token_entry_refuses_an_unknown_scope(self) -> None:
        with pytest.raises(ValueError, match="scopes"):
            ApiToken(name="admin", token=WRITER_TOKEN, scopes=["jobs:admin"])
