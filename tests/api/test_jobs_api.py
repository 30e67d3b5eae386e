"""/v1/jobs: create, read (ETag), idempotency, listing with filters and cursors, targets.

Jobs here mostly name images that do not exist: they fail quickly (ImageNotFound), which is all
that these tests need of them; the one watching progress while a job runs shares a real one."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.api.test_validation import assert_problem
from tests.conftest import (
    REGION,
    SOURCE_ACCOUNT,
    Service,
    make_settings,
    new_account_ids,
    serve,
)

# Every answer has exactly the fields of its schema in the committed spec (which
# tests/api/test_openapi.py holds to the app's): none missing, none extra.
SCHEMAS = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text(encoding="utf-8")
)["components"]["schemas"]
JOB_FIELDS = set(SCHEMAS["JobOut"]["properties"])
PROGRESS_FIELDS = {"total", "pending", "running", "succeeded", "failed", "cancelled"}
TARGET_FIELDS = set(SCHEMAS["TargetOut"]["properties"])


@pytest.fixture
async def idle(database_url: str, aws_double: AwsDouble) -> AsyncIterator[Service]:
    """The app without its worker: jobs stay queued, so that listings hold still."""
    settings = make_settings(
        database_url, aws_double, embedded_worker=False, source_role_name="amishare-source"
    )
    async for client in serve(settings):
        yield Service(client, settings, aws_double)


def missing_image() -> str:
    """A well-formed AMI ID that names no image."""
    return f"ami-{uuid.uuid4().hex[:17]}"


def utc(value: str) -> datetime:
    """An RFC 3339 UTC time."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset() == UTC.utcoffset(None), value
    return parsed


def assert_progress_adds_up(job: dict[str, Any]) -> None:
    progress = job["progress"]
    assert set(progress) == PROGRESS_FIELDS
    parts = sum(progress[name] for name in PROGRESS_FIELDS - {"total"})
    assert parts == progress["total"], progress


async def create(service: Service, **body: Any) -> dict[str, Any]:
    body.setdefault("image_id", missing_image())
    body.setdefault("account_ids", new_account_ids(1))
    response = await service.post_job(**body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def list_ids(service: Service, **params: Any) -> list[str]:
    response = await service.client.get("/v1/jobs", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["items"]]


async def test_created_job_is_202_with_location_and_the_job(idle: Service) -> None:
    image_id = missing_image()
    accounts = new_account_ids(3)

    response = await idle.post_job(
        image_id=image_id, account_ids=accounts, labels={"team": "platform", "ticket": "OPS-1"}
    )

    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/json"
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert isinstance(job["id"], str) and job["id"]
    assert job["action"] == "share"
    assert job["status"] == "queued"
    assert job["image_id"] == image_id
    assert job["region"] == REGION
    assert job["source_account_id"] == SOURCE_ACCOUNT
    assert job["kms_access"] == "key_policy"
    assert job["share_snapshots"] is True
    assert job["verify"] is True  # the service has a destination role
    assert job["copy"] is None
    assert job["labels"] == {"team": "platform", "ticket": "OPS-1"}
    assert abs((datetime.now(UTC) - utc(job["created_at"])).total_seconds()) < 60
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert job["progress"] == {
        "total": 3,
        "pending": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert job["error"] is None
    assert job["attempts"] == 0

    fetched = await idle.client.get(response.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]
    assert fetched.json()["labels"] == job["labels"]


async def test_job_request_options_are_returned_as_given(idle: Service) -> None:
    job = await create(
        idle,
        source_account_id="333333333333",
        kms_access="none",
        share_snapshots=False,
        verify=False,
        labels={"empty": ""},
    )

    assert job["source_account_id"] == "333333333333"
    assert job["kms_access"] == "none"
    assert job["share_snapshots"] is False
    assert job["verify"] is False
    assert job["labels"] == {"empty": ""}


async def test_finished_job_has_times_and_its_error(service: Service) -> None:
    created = await create(service)

    job = await service.wait_for(created["id"])

    assert job["status"] == "failed"
    assert job["error"]["code"] == "ImageNotFound"
    assert job["error"]["message"]
    assert utc(job["created_at"]) <= utc(job["started_at"]) <= utc(job["finished_at"])
    assert_progress_adds_up(job)


async def test_unknown_job_is_404_problem(idle: Service) -> None:
    for path in ("/v1/jobs/job-doesnotexist", "/v1/jobs/job-doesnotexist/targets"):
        response = await idle.client.get(path)

        body = assert_problem(response, 404)
        assert "job-doesnotexist" in body["detail"]
    conditional = await idle.client.get(
        "/v1/jobs/job-doesnotexist", headers={"If-None-Match": '"v1"'}
    )
    assert_problem(conditional, 404)


async def test_job_etag_answers_304_until_the_job_changes(service: Service) -> None:
    created = await service.post_job(image_id=missing_image(), account_ids=new_account_ids(2))
    first_etag = created.headers["ETag"]
    job_id = created.json()["id"]
    await service.wait_for(job_id)

    current = await service.client.get(f"/v1/jobs/{job_id}")
    etag = current.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert etag != first_etag, "the job changed since it was created"

    unchanged = await service.client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag

    weak = await service.client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": f"W/{etag}"})
    assert weak.status_code == 304
    among = await service.client.get(
        f"/v1/jobs/{job_id}", headers={"If-None-Match": f'"nope", {etag}'}
    )
    assert among.status_code == 304

    stale = await service.client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": first_etag})
    assert stale.status_code == 200
    assert stale.headers["ETag"] == etag
    assert stale.json() == current.json()


async def test_same_idempotency_key_and_body_returns_the_first_job(idle: Service) -> None:
    body = {"image_id": missing_image(), "account_ids": new_account_ids(2), "labels": {"a": "b"}}
    key = {"Idempotency-Key": f"deploy-{uuid.uuid4()}"}
    first = await idle.client.post(
        "/v1/jobs", json={"action": "share", "region": REGION, **body}, headers=key
    )
    assert first.status_code == 202, first.text

    again = await idle.client.post(
        "/v1/jobs", json={"action": "share", "region": REGION, **body}, headers=key
    )

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/v1/jobs/{first.json()['id']}"
    assert set(again.json()) == JOB_FIELDS
    assert await list_ids(idle) == [first.json()["id"]]


async def test_same_idempotency_key_with_another_body_is_422(idle: Service) -> None:
    key = {"Idempotency-Key": f"deploy-{uuid.uuid4()}"}
    body = {"action": "share", "region": REGION, "image_id": missing_image()}
    first = await idle.client.post(
        "/v1/jobs", json={**body, "account_ids": ["222222222222"]}, headers=key
    )
    assert first.status_code == 202, first.text

    other = await idle.client.post(
        "/v1/jobs", json={**body, "account_ids": ["444444444444"]}, headers=key
    )

    problem = assert_problem(other, 422, "Idempotency-Key")
    assert first.json()["id"] in problem["detail"]
    assert await list_ids(idle) == [first.json()["id"]]


async def test_another_idempotency_key_creates_another_job(idle: Service) -> None:
    body = {
        "action": "share",
        "region": REGION,
        "image_id": missing_image(),
        "account_ids": new_account_ids(1),
    }
    first = await idle.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "a"})
    second = await idle.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "b"})
    without = await idle.client.post("/v1/jobs", json=body)

    assert [first.status_code, second.status_code, without.status_code] == [202, 202, 202]
    assert len({first.json()["id"], second.json()["id"], without.json()["id"]}) == 3


async def test_jobs_are_listed_newest_first(idle: Service) -> None:
    created = [(await create(idle))["id"] for _ in range(4)]

    response = await idle.client.get("/v1/jobs")

    assert response.status_code == 200
    page = response.json()
    assert page["next_cursor"] is None
    assert [job["id"] for job in page["items"]] == created[::-1]
    for job in page["items"]:
        assert set(job) == JOB_FIELDS
        assert_progress_adds_up(job)


async def test_jobs_are_filtered_by_status_action_image_account_and_label(
    service: Service,
) -> None:
    image_a, image_b = missing_image(), missing_image()
    x, y = new_account_ids(2)
    j1 = await create(service, image_id=image_a, account_ids=[x], labels={"team": "platform"})
    j2 = await create(
        service, image_id=image_b, account_ids=[y], labels={"team": "data", "link": "a:b"}
    )
    j3 = await create(
        service, image_id=image_a, account_ids=[x, y], labels={"team": "platform", "env": "prod"}
    )
    for job in (j1, j2, j3):
        await service.wait_for(job["id"])
    every = [j3["id"], j2["id"], j1["id"]]

    assert await list_ids(service) == every
    assert await list_ids(service, status="failed") == every
    assert await list_ids(service, status="succeeded") == []
    assert await list_ids(service, status="queued") == []
    assert await list_ids(service, action="share") == every
    assert await list_ids(service, action="revoke") == []
    assert await list_ids(service, image_id=image_a) == [j3["id"], j1["id"]]
    assert await list_ids(service, image_id=missing_image()) == []
    assert await list_ids(service, account_id=y) == [j3["id"], j2["id"]]
    assert await list_ids(service, account_id="999999999999") == []
    assert await list_ids(service, label="team:platform") == [j3["id"], j1["id"]]
    assert await list_ids(service, label="env:prod") == [j3["id"]]
    assert await list_ids(service, label="link:a:b") == [j2["id"]]
    assert await list_ids(service, label="team:nobody") == []
    assert await list_ids(service, label="nokey:platform") == []
    assert await list_ids(service, image_id=image_a, account_id=y) == [j3["id"]]


async def test_job_pages_cover_every_job_exactly_once(idle: Service) -> None:
    created = [(await create(idle))["id"] for _ in range(7)]
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None

    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await idle.client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        sizes.append(len(page["items"]))
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor

    assert sizes == [3, 3, 1]
    assert seen == created[::-1]


async def test_job_pages_keep_their_filter(idle: Service) -> None:
    image_id = missing_image()
    wanted = [(await create(idle, image_id=image_id))["id"] for _ in range(3)]
    await create(idle)  # another image, between pages
    wanted.append((await create(idle, image_id=image_id))["id"])

    first = (await idle.client.get("/v1/jobs", params={"image_id": image_id, "limit": 2})).json()
    second = (
        await idle.client.get(
            "/v1/jobs", params={"image_id": image_id, "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()

    assert [job["id"] for job in first["items"] + second["items"]] == wanted[::-1]
    assert second["next_cursor"] is None


async def test_new_jobs_do_not_shift_later_pages(idle: Service) -> None:
    older = [(await create(idle))["id"] for _ in range(4)]
    first = (await idle.client.get("/v1/jobs", params={"limit": 2})).json()
    await create(idle)  # arrives while a client pages

    second = (
        await idle.client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()

    assert [job["id"] for job in first["items"] + second["items"]] == older[::-1]


async def test_targets_are_paged_in_request_order(idle: Service) -> None:
    accounts = new_account_ids(7)
    job = await create(idle, account_ids=accounts)
    seen: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = None

    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await idle.client.get(f"/v1/jobs/{job['id']}/targets", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        sizes.append(len(page["items"]))
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sizes == [3, 3, 1]
    assert [target["principal"] for target in seen] == accounts
    for target in seen:
        assert set(target) == TARGET_FIELDS
        assert target["principal_type"] == "account"
        assert target["status"] in {"pending", "running", "succeeded", "failed", "cancelled"}
        utc(target["updated_at"])


async def test_targets_are_filtered_by_status(service: Service) -> None:
    accounts = new_account_ids(5)
    job = await create(service, account_ids=accounts)
    await service.wait_for(job["id"])
    path = f"/v1/jobs/{job['id']}/targets"

    failed = (await service.client.get(path, params={"status": "failed", "limit": 2})).json()
    rest = (
        await service.client.get(
            path, params={"status": "failed", "limit": 500, "cursor": failed["next_cursor"]}
        )
    ).json()
    pending = (await service.client.get(path, params={"status": "pending"})).json()
    succeeded = (await service.client.get(path, params={"status": "succeeded"})).json()

    assert [t["principal"] for t in failed["items"] + rest["items"]] == accounts
    assert {t["status"] for t in failed["items"] + rest["items"]} == {"failed"}
    assert {t["error"]["code"] for t in failed["items"]} == {"ImageNotFound"}
    assert pending == {"items": [], "next_cursor": None}
    assert succeeded == {"items": [], "next_cursor": None}


async def test_progress_counts_add_up_to_total_while_the_job_runs(service: Service) -> None:
    # An image that exists, and 30 ms per AWS call: the job runs long enough to be watched.
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    service.double.set_faults(latency_ms=30)
    job = await create(service, image_id=image.image_id, account_ids=new_account_ids(12))
    assert job["progress"]["total"] == 12
    assert_progress_adds_up(job)
    seen: set[str] = set()

    async with asyncio.timeout(60):
        while job["status"] in ("queued", "running"):
            job = (await service.client.get(f"/v1/jobs/{job['id']}")).json()
            assert job["progress"]["total"] == 12
            assert_progress_adds_up(job)
            seen |= {name for name in PROGRESS_FIELDS - {"total"} if job["progress"][name]}
            await asyncio.sleep(0.02)

    assert "running" in seen, "the job was never seen running"
    assert job["status"] == "succeeded", job
    assert job["progress"]["succeeded"] == 12
    listed = (await service.client.get("/v1/jobs")).json()["items"]
    assert listed[0]["progress"] == job["progress"]
