"""The claim's ordering rule (app/db/queue.py), on an in-memory SQLite database made from the
models: jobs on one image and region run one at a time in the order they were accepted; a live
lease holds its job and its image; a lease that ran out is claimable, except by the worker that
still runs the job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from app.db.models import Job, metadata
from app.db.queue import JobQueue
from app.db.types import utcnow
from app.domain.types import JobStatus

LEASE = timedelta(seconds=30)
QUEUED, RUNNING, SUCCEEDED = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:", poolclass=StaticPool)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield session
    await engine.dispose()


class Jobs:
    """Jobs added in acceptance order (`seq`), and claims made on them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.queue = JobQueue(session, skip_locked=False)

    async def add(
        self,
        job_id: str,
        status: JobStatus = QUEUED,
        *,
        image_id: str = "ami-00000001",
        region: str = "us-east-1",
        worker_id: str | None = None,
        lease_expires_at: datetime | None = None,
    ) -> None:
        self.session.add(
            Job(
                id=job_id,
                action="share",
                status=status,
                image_id=image_id,
                region=region,
                source_account_id="123456789012",
                kms_access="key_policy",
                share_snapshots=True,
                verify=False,
                created_by="ci",
                worker_id=worker_id,
                lease_expires_at=lease_expires_at,
                attempts=1 if status is RUNNING else 0,
            )
        )
        await self.session.flush()

    async def running(
        self, job_id: str, worker_id: str, *, expired: bool = False, **kw: str
    ) -> None:
        lease = utcnow() + (-LEASE if expired else LEASE)
        await self.add(job_id, RUNNING, worker_id=worker_id, lease_expires_at=lease, **kw)

    async def claim(self, worker_id: str = "w-new", running: tuple[str, ...] = ()) -> str | None:
        job = await self.queue.claim_next(worker_id, LEASE, running)
        return job.id if job else None

    async def get(self, job_id: str) -> Job:
        self.session.expire_all()
        return (await self.session.execute(select(Job).where(Job.id == job_id))).scalar_one()


@pytest.fixture
def jobs(session: AsyncSession) -> Jobs:
    return Jobs(session)


async def test_the_oldest_queued_job_is_claimed_first_and_becomes_the_workers(jobs: Jobs) -> None:
    await jobs.add("job-1", image_id="ami-00000001")
    await jobs.add("job-2", image_id="ami-00000002")

    assert await jobs.claim("w-1") == "job-1"
    claimed = await jobs.get("job-1")
    assert (claimed.status, claimed.worker_id, claimed.attempts) == (RUNNING, "w-1", 1)
    assert claimed.lease_expires_at is not None and claimed.lease_expires_at > utcnow()
    assert claimed.started_at is not None
    assert await jobs.claim("w-2") == "job-2"
    assert await jobs.claim("w-3") is None


async def test_a_job_waits_for_an_earlier_unfinished_job_on_its_image_and_region(
    jobs: Jobs,
) -> None:
    await jobs.running("job-1", "w-1")
    await jobs.add("job-2")  # same image and region: waits for job-1
    await jobs.add("job-3", image_id="ami-00000002")
    await jobs.add("job-4", region="eu-west-1")  # same image, another region: independent

    assert await jobs.claim() == "job-3"
    assert await jobs.claim() == "job-4"
    assert await jobs.claim() is None


async def test_an_earlier_queued_job_on_the_image_is_claimed_before_a_later_one(
    jobs: Jobs,
) -> None:
    await jobs.add("job-1")
    await jobs.add("job-2")

    assert await jobs.claim("w-1") == "job-1"
    assert await jobs.claim("w-2") is None  # job-2 waits for job-1, now running


async def test_a_finished_job_no_longer_holds_its_image(jobs: Jobs) -> None:
    await jobs.add("job-1", SUCCEEDED)
    await jobs.add("job-2")

    assert await jobs.claim() == "job-2"


async def test_a_running_job_under_a_live_lease_holds_its_image_against_earlier_jobs(
    jobs: Jobs,
) -> None:
    # job-1 was accepted first and is queued again (retried) while job-2 runs.
    await jobs.add("job-1")
    await jobs.running("job-2", "w-1")

    assert await jobs.claim() is None


async def test_a_job_whose_lease_ran_out_is_claimed_again_by_another_worker(jobs: Jobs) -> None:
    await jobs.running("job-1", "w-dead", expired=True)
    await jobs.add("job-2")  # on the same image: still waits behind job-1

    assert await jobs.claim("w-2") == "job-1"
    taken = await jobs.get("job-1")
    assert (taken.worker_id, taken.attempts) == ("w-2", 2)
    assert taken.lease_expires_at is not None and taken.lease_expires_at > utcnow()
    assert await jobs.claim("w-3") is None


async def test_a_job_under_a_live_lease_is_never_claimed(jobs: Jobs) -> None:
    await jobs.running("job-1", "w-1")

    assert await jobs.claim("w-2") is None
    assert (await jobs.get("job-1")).worker_id == "w-1"


async def test_a_worker_never_reclaims_a_job_it_still_runs_though_its_lease_ran_out(
    jobs: Jobs,
) -> None:
    await jobs.running("job-1", "w-1", expired=True)
    await jobs.add("job-2")  # same image: still waits behind job-1
    await jobs.add("job-3", image_id="ami-00000002")

    assert await jobs.claim("w-1", running=("job-1",)) == "job-3"
    assert await jobs.claim("w-1", running=("job-1",)) is None
    assert (await jobs.get("job-1")).attempts == 1
    assert await jobs.claim("w-2") == "job-1"  # any other worker may take it over
