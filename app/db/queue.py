"""The job queue: claim with a lease, heartbeat, release, finish.

Every transition is guarded by `worker_id` and status, so that a worker whose lease ran out can
never overwrite what the worker that took the job over has done.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.models import Job
from app.db.types import utcnow
from app.domain.types import JobStatus

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def held_by(worker_id: str) -> ColumnElement[bool]:
    """The job is running and still this worker's: the guard of every write a worker makes, so
    that one whose lease ran out (the job was taken over) changes nothing any more."""
    return and_(col(Job.worker_id) == worker_id, col(Job.status) == JobStatus.RUNNING)


class JobQueue:
    def __init__(self, session: AsyncSession, *, skip_locked: bool) -> None:
        self.session = session
        self.skip_locked = skip_locked

    async def claim_next(
        self, worker_id: str, lease: timedelta, running: Collection[str] = ()
    ) -> Job | None:
        """Take the oldest runnable job, or one whose worker's lease ran out, in one statement.

        A job waits while an earlier unfinished job on the same image and region exists, so that
        jobs on one image run one at a time, in the order they were accepted. `running` are the
        jobs this worker runs now: never claimed again by it, even when their lease ran out
        (the database was away): its own second copy would pass every `worker_id` guard.
        """
        now = utcnow()
        earlier = aliased(Job)
        candidate = (
            select(col(Job.seq))
            .where(
                col(Job.id).not_in(list(running)) if running else true(),
                or_(
                    col(Job.status) == JobStatus.QUEUED,
                    and_(col(Job.status) == JobStatus.RUNNING, col(Job.lease_expires_at) < now),
                ),
                ~exists().where(
                    col(earlier.image_id) == col(Job.image_id),
                    col(earlier.region) == col(Job.region),
                    col(earlier.status).in_(_UNFINISHED),
                    or_(
                        col(earlier.seq) < col(Job.seq),
                        and_(
                            col(earlier.status) == JobStatus.RUNNING,
                            col(earlier.lease_expires_at) >= now,
                        ),
                    ),
                    col(earlier.seq) != col(Job.seq),
                ),
            )
            .order_by(col(Job.seq))
            .limit(1)
        )
        if self.skip_locked:
            candidate = candidate.with_for_update(skip_locked=True, of=Job)
        statement = (
            update(Job)
            .where(col(Job.seq) == candidate.scalar_subquery())
            .values(
                status=JobStatus.RUNNING,
                worker_id=worker_id,
                lease_expires_at=now + lease,
                attempts=col(Job.attempts) + 1,
                started_at=func.coalesce(col(Job.started_at), now),
                updated_at=now,
                version=col(Job.version) + 1,
            )
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def renew_leases(
        self, job_ids: Sequence[str], worker_id: str, lease: timedelta
    ) -> set[str]:
        """Renew the leases of these jobs in one statement; the ids still this worker's."""
        if not job_ids:
            return set()
        statement = (
            update(Job)
            .where(col(Job.id).in_(list(job_ids)), held_by(worker_id))
            .values(lease_expires_at=utcnow() + lease)
            .returning(col(Job.id))
            .execution_options(synchronize_session=False)
        )
        return set((await self.session.execute(statement)).scalars().all())

    async def record_shared_image(self, job_id: str, worker_id: str, image_id: str) -> None:
        """The image the job shares (its own, or a re-encrypted copy of it)."""
        await self.session.execute(
            update(Job)
            .where(col(Job.id) == job_id, held_by(worker_id))
            .values(shared_image_id=image_id, updated_at=utcnow(), version=col(Job.version) + 1)
        )

    async def release(self, job_id: str, worker_id: str) -> bool:
        """Hand the job back at once (graceful shutdown): the next claim resumes it. False when
        it was not this worker's any more (finished, or taken over)."""
        statement = (
            update(Job)
            .where(col(Job.id) == job_id, col(Job.worker_id) == worker_id)
            .values(worker_id=None, lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(
        self,
        job_id: str,
        worker_id: str,
        status: JobStatus,
        error: tuple[str, str] | None = None,
    ) -> bool:
        now = utcnow()
        statement = (
            update(Job)
            .where(col(Job.id) == job_id, held_by(worker_id))
            .values(
                status=status,
                finished_at=now,
                updated_at=now,
                worker_id=None,
                lease_expires_at=None,
                error_code=error[0] if error else None,
                error_message=error[1] if error else None,
                version=col(Job.version) + 1,
            )
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]
