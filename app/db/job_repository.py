"""Queries on jobs and their targets, for the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Job, JobTarget
from app.db.types import utcnow
from app.domain.types import JobStatus, Step, TargetStatus

Progress = Counter[TargetStatus]


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: str | None = None
    action: str | None = None
    image_id: str | None = None
    account_id: str | None = None
    label: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FailedTarget:
    position: int
    principal: str
    principal_type: str


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, job: Job, targets: Sequence[JobTarget]) -> None:
        """The job, then its targets in one multi-row INSERT (not one ORM object each)."""
        self.session.add(job)
        await self.session.flush()
        rows = [
            target.model_dump(exclude={"id"}) | {"updated_at": target.updated_at}
            for target in targets
        ]
        if rows:
            await self.session.execute(insert(JobTarget), rows)

    async def get(self, job_id: str) -> Job | None:
        result = await self.session.execute(select(Job).where(col(Job.id) == job_id))
        return result.scalar_one_or_none()

    async def versions(self, job_ids: Sequence[str]) -> dict[str, int]:
        """The versions of these jobs (the ones that exist), in one query."""
        query = select(col(Job.id), col(Job.version)).where(col(Job.id).in_(job_ids))
        return {job_id: version for job_id, version in (await self.session.execute(query)).all()}

    async def find_by_idempotency_key(self, created_by: str, key: str) -> Job | None:
        query = select(Job).where(
            col(Job.created_by) == created_by, col(Job.idempotency_key) == key
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def newest_first(
        self, filters: JobFilter, limit: int, before_seq: int | None
    ) -> Sequence[Job]:
        """A page of jobs; `before_seq` continues a previous page."""
        query = select(Job).order_by(col(Job.seq).desc()).limit(limit)
        if before_seq is not None:
            query = query.where(col(Job.seq) < before_seq)
        if filters.status:
            query = query.where(col(Job.status) == filters.status)
        if filters.action:
            query = query.where(col(Job.action) == filters.action)
        if filters.image_id:
            query = query.where(col(Job.image_id) == filters.image_id)
        if filters.account_id:
            targeted = select(col(JobTarget.job_id)).where(
                col(JobTarget.principal) == filters.account_id
            )
            query = query.where(col(Job.id).in_(targeted))
        if filters.label:
            key, value = filters.label
            query = query.where(Job.__table__.c.labels[key].as_string() == value)  # type: ignore[attr-defined]
        return (await self.session.execute(query)).scalars().all()

    async def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job no worker has claimed yet; False if it is not queued any more."""
        now = utcnow()
        cancelled = await self.session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.status) == JobStatus.QUEUED)
            .values(
                status=JobStatus.CANCELLED,
                cancel_requested=True,
                finished_at=now,
                updated_at=now,
                version=col(Job.version) + 1,
            )
        )
        if not cancelled.rowcount:  # type: ignore[attr-defined]
            return False
        await self.session.execute(
            update(JobTarget)
            .where(
                col(JobTarget.job_id) == job_id,
                col(JobTarget.status).in_([TargetStatus.PENDING, TargetStatus.RUNNING]),
            )
            .values(status=TargetStatus.CANCELLED, updated_at=now)
        )
        return True

    async def request_cancel(self, job_id: str) -> None:
        """Ask the worker running the job to stop at its next step boundary."""
        await self.session.execute(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.status) == JobStatus.RUNNING)
            .values(cancel_requested=True, updated_at=utcnow(), version=col(Job.version) + 1)
        )

    async def failed_targets(self, job_id: str) -> Sequence[FailedTarget]:
        """The job's failed targets in position order: what a retry may queue again."""
        query = (
            select(col(JobTarget.position), col(JobTarget.principal), col(JobTarget.principal_type))
            .where(col(JobTarget.job_id) == job_id, col(JobTarget.status) == TargetStatus.FAILED)
            .order_by(col(JobTarget.position))
        )
        rows = (await self.session.execute(query)).all()
        return [FailedTarget(position, principal, kind) for position, principal, kind in rows]

    async def refuse_failed(
        self, job_id: str, positions: Sequence[int], code: str, message: str
    ) -> None:
        """These failed targets stay failed, now with this error (a retry did not queue them)."""
        if not positions:
            return
        await self.session.execute(
            update(JobTarget)
            .where(
                col(JobTarget.job_id) == job_id,
                col(JobTarget.status) == TargetStatus.FAILED,
                col(JobTarget.position).in_(positions),
            )
            .values(error_code=code, error_message=message, updated_at=utcnow())
        )

    async def requeue_failed(self, job_id: str, positions: Sequence[int]) -> bool:
        """These failed targets back to pending and the job back to the queue, in one
        transaction; False if none of them is failed any more."""
        if not positions:
            return False
        now = utcnow()
        requeued = await self.session.execute(
            update(JobTarget)
            .where(
                col(JobTarget.job_id) == job_id,
                col(JobTarget.status) == TargetStatus.FAILED,
                col(JobTarget.position).in_(positions),
            )
            .values(
                status=TargetStatus.PENDING,
                step=Step.PENDING,
                error_code=None,
                error_message=None,
                updated_at=now,
            )
        )
        if not requeued.rowcount:  # type: ignore[attr-defined]
            return False
        await self.session.execute(
            update(Job)
            .where(col(Job.id) == job_id)
            .values(
                status=JobStatus.QUEUED,
                finished_at=None,
                error_code=None,
                error_message=None,
                cancel_requested=False,
                attempts=0,
                updated_at=now,
                version=col(Job.version) + 1,
            )
        )
        return True

    async def progress(self, job_ids: Sequence[str]) -> dict[str, Progress]:
        """Target counts by status for each job, in one query."""
        query = (
            select(col(JobTarget.job_id), col(JobTarget.status), func.count())
            .where(col(JobTarget.job_id).in_(job_ids))
            .group_by(col(JobTarget.job_id), col(JobTarget.status))
        )
        counts: dict[str, Progress] = {job_id: Counter() for job_id in job_ids}
        for job_id, status, count in (await self.session.execute(query)).all():
            counts[job_id][TargetStatus(status)] = count
        return counts

    async def targets(
        self,
        job_id: str,
        status: str | None,
        limit: int,
        after_position: int | None,
        region: str | None = None,
    ) -> Sequence[JobTarget]:
        query = (
            select(JobTarget)
            .where(col(JobTarget.job_id) == job_id)
            .order_by(col(JobTarget.position))
            .limit(limit)
        )
        if status:
            query = query.where(col(JobTarget.status) == status)
        if region:
            query = query.where(col(JobTarget.region) == region)
        if after_position is not None:
            query = query.where(col(JobTarget.position) > after_position)
        return (await self.session.execute(query)).scalars().all()
