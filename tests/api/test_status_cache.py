"""GET /v1/jobs/{id} answered from memory: never older than `max_age`, one database read per
expiry however many poll, a change through this process seen at once, and a client that has
seen a newer version answered from the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col

from app.db.models import Job
from app.sandbox.aws_double import AwsDouble
from app.service.status_cache import StatusCache
from tests.api.test_validation import assert_problem
from tests.conftest import REGION, Service, make_settings, new_account_ids, serve


def versions(table: Mapping[str, int]) -> object:
    async def read(job_ids: Sequence[str]) -> Mapping[str, int]:
        return {job_id: table[job_id] for job_id in job_ids if job_id in table}

    return read


def test_an_answer_is_served_only_while_younger_than_max_age() -> None:
    cache = StatusCache(max_age=1.0)
    cache.put("job-1", 3, b"three", read_at=100.0)

    assert cache.get("job-1", now=100.5) is not None
    assert cache.get("job-1", now=101.5) is None
    assert cache.get("job-2", now=100.5) is None


def test_a_slower_read_of_an_older_version_does_not_replace_a_newer_one() -> None:
    cache = StatusCache(max_age=1.0)
    cache.put("job-1", 4, b"four", read_at=100.0)
    cache.put("job-1", 3, b"three", read_at=100.1)

    found = cache.get("job-1", now=100.2)
    assert found is not None and found.body == b"four"


def test_a_disabled_cache_remembers_nothing() -> None:
    cache = StatusCache(max_age=0)
    cache.put("job-1", 1, b"one", read_at=0.0)
    assert len(cache) == 0
    assert not cache.enabled


async def test_refresh_confirms_unchanged_answers_and_drops_changed_and_missing_ones() -> None:
    cache = StatusCache(max_age=60.0)
    for job_id in ("same", "changed", "gone"):
        cache.put(job_id, 1, job_id.encode(), read_at=time.monotonic())

    await cache.refresh(versions({"same": 1, "changed": 2}))  # type: ignore[arg-type]

    assert cache.get("same") is not None
    assert cache.get("changed") is None
    assert cache.get("gone") is None


async def test_refresh_forgets_answers_nobody_asked_for_lately() -> None:
    cache = StatusCache(max_age=60.0, idle_seconds=0.0)
    cache.put("job-1", 1, b"one", read_at=0.0)
    reads: list[Sequence[str]] = []

    async def read(job_ids: Sequence[str]) -> Mapping[str, int]:
        reads.append(job_ids)
        return {}

    await cache.refresh(read)

    assert len(cache) == 0
    assert reads == [], "nothing left to check: no query"


async def test_concurrent_misses_share_one_database_read() -> None:
    cache = StatusCache(max_age=60.0)
    reads = 0
    release = asyncio.Event()

    async def read() -> tuple[int, bytes]:
        nonlocal reads
        reads += 1
        await release.wait()
        return 7, b"seven"

    waiting = [asyncio.create_task(cache.load("job-1", read)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    answers = await asyncio.gather(*waiting)

    assert reads == 1
    assert {(a.version, a.body) for a in answers} == {(7, b"seven")}
    assert cache.get("job-1") is not None


async def test_a_failed_read_fails_every_waiter_and_is_not_remembered() -> None:
    cache = StatusCache(max_age=60.0)

    async def read() -> tuple[int, bytes]:
        raise LookupError("no such job")

    results = await asyncio.gather(
        cache.load("job-1", read), cache.load("job-1", read), return_exceptions=True
    )

    assert all(isinstance(r, LookupError) for r in results)
    assert cache.get("job-1") is None


@pytest.fixture
async def idle(database_url: str, aws_double: AwsDouble) -> AsyncIterator[Service]:
    settings = make_settings(
        database_url, aws_double, embedded_worker=False, status_cache_seconds=0.3
    )
    async for client in serve(settings):
        yield Service(client, settings, aws_double)


async def queued_job(idle: Service) -> tuple[str, str]:
    created = await idle.post_job(
        image_id=f"ami-{uuid.uuid4().hex[:17]}", region=REGION, account_ids=new_account_ids(2)
    )
    assert created.status_code == 202, created.text
    return created.json()["id"], created.headers["ETag"]


async def bump_version(idle: Service, job_id: str) -> int:
    """A change made elsewhere (a worker in another process), straight in the database."""
    engine = create_async_engine(idle.settings.database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(
                update(Job)
                .where(col(Job.id) == job_id)
                .values(version=col(Job.version) + 1)
                .returning(col(Job.version))
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


async def test_a_cancel_is_seen_by_the_next_poll(idle: Service) -> None:
    job_id, _ = await queued_job(idle)
    before = await idle.client.get(f"/v1/jobs/{job_id}")
    assert before.json()["status"] == "queued"

    cancelled = await idle.client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202

    polled = await idle.client.get(f"/v1/jobs/{job_id}")
    assert polled.json()["status"] == "cancelled"
    assert polled.headers["ETag"] != before.headers["ETag"]


async def test_a_change_made_elsewhere_reaches_pollers_and_a_newer_etag_reads_the_database(
    idle: Service,
) -> None:
    job_id, etag = await queued_job(idle)
    first = await idle.client.get(f"/v1/jobs/{job_id}")
    assert first.headers["ETag"] == etag

    newer = await bump_version(idle, job_id)

    # A client that has already seen the newer version is not answered with the older one.
    conditional = await idle.client.get(
        f"/v1/jobs/{job_id}", headers={"If-None-Match": f'"v{newer}"'}
    )
    assert conditional.status_code == 304
    assert conditional.headers["ETag"] == f'"v{newer}"'

    # Everyone else sees it once the remembered answer is checked again (max_age 0.3 s).
    async with asyncio.timeout(10):
        while True:
            polled = await idle.client.get(f"/v1/jobs/{job_id}")
            if polled.headers["ETag"] == f'"v{newer}"':
                break
            await asyncio.sleep(0.05)


async def test_an_overlong_if_none_match_is_a_422_naming_the_header(idle: Service) -> None:
    job_id, _ = await queued_job(idle)
    answer = await idle.client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": "x" * 1025})
    body = assert_problem(answer, 422)
    assert "if-none-match" in str(body).lower()
