"""Recording what happens to a job's targets: one statement for any number of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Job, JobTarget
from app.db.queue import held_by
from app.db.types import utcnow
from app.domain.types import Step, TargetStatus

_UNFINISHED = (TargetStatus.PENDING.value, TargetStatus.RUNNING.value)


class JobTargets:
    """Target updates made by the worker that holds the job's lease, and only by it."""

    def __init__(
        self, session: AsyncSession, job_id: str, worker_id: str, region: str | None = None
    ) -> None:
        self.session = session
        self.job_id = job_id
        self.worker_id = worker_id
        self.region = region  # the targets of one of the job's Regions (None: all of them)

    async def unfinished(self) -> Sequence[JobTarget]:
        query = (
            select(JobTarget)
            .where(col(JobTarget.job_id) == self.job_id, col(JobTarget.status).in_(_UNFINISHED))
            .order_by(col(JobTarget.position))
        )
        return (await self.session.execute(query)).scalars().all()

    async def copied(self, principals: Sequence[str]) -> dict[str, str]:
        """The destination copies recorded for these targets."""
        query = select(col(JobTarget.principal), col(JobTarget.copied_image_id)).where(
            col(JobTarget.job_id) == self.job_id,
            col(JobTarget.principal).in_(principals),
            col(JobTarget.copied_image_id).is_not(None),
        )
        if self.region is not None:
            query = query.where(col(JobTarget.region) == self.region)
        return {p: i for p, i in (await self.session.execute(query)).all() if i is not None}

    async def record_copy(self, principal: str, image_id: str) -> None:
        await self._update([principal], copied_image_id=image_id)

    async def add(self, principals: Sequence[tuple[str, str]], image_id: str) -> None:
        """New pending targets (principal, type) in this Region, after the job's others; none
        when the job is no longer this worker's, or a principal is a target already."""
        assert self.region is not None
        ours = await self.session.execute(
            select(col(Job.id)).where(col(Job.id) == self.job_id, held_by(self.worker_id))
        )
        if ours.first() is None or not principals:
            return
        known = select(col(JobTarget.principal), func.max(col(JobTarget.position))).where(
            col(JobTarget.job_id) == self.job_id
        )
        rows = (await self.session.execute(known.group_by(col(JobTarget.principal)))).all()
        present = {principal for principal, _ in rows}
        position = max((p for _, p in rows), default=-1) + 1
        now = utcnow()
        new = [
            {
                "job_id": self.job_id,
                "position": position + index,
                "principal": value,
                "principal_type": kind,
                "region": self.region,
                "image_id": image_id,
                "status": TargetStatus.PENDING.value,
                "step": Step.PENDING.value,
                "attempts": 0,
                "updated_at": now,
            }
            for index, (value, kind) in enumerate(p for p in principals if p[0] not in present)
        ]
        if new:
            await self.session.execute(insert(JobTarget), new)
            await self.session.execute(  # the job changed: pollers see a new version
                update(Job)
                .where(col(Job.id) == self.job_id)
                .values(version=col(Job.version) + 1, updated_at=now)
            )

    async def record_drift(self, principal: str, drift: dict[str, Any] | None) -> None:
        await self._update([principal], drift=drift)

    async def record_image(self, image_id: str) -> None:
        """The image the targets (of this Region) are shared: the job's, or its copy."""
        await self._update(None, image_id=image_id)

    async def start(self, principals: Sequence[str]) -> None:
        """An attempt at these targets begins (counted now, so a crash still counts it)."""
        await self._update(
            principals,
            status=TargetStatus.RUNNING,
            step=Step.INSPECT,
            attempts=col(JobTarget.attempts) + 1,
            error_code=None,
            error_message=None,
            note=None,
        )

    async def reach(self, principals: Sequence[str], step: Step) -> None:
        await self._update(principals, step=step)

    async def fail(self, principals: Sequence[str], step: Step, code: str, message: str) -> None:
        await self._update(
            principals,
            status=TargetStatus.FAILED,
            step=step,
            error_code=code,
            error_message=message[:2000],
        )

    async def succeed(self, principals: Sequence[str], step: Step) -> None:
        await self._update(principals, status=TargetStatus.SUCCEEDED, step=step)

    async def cancel(self, principals: Sequence[str], note: str) -> None:
        await self._update(principals, status=TargetStatus.CANCELLED, note=note)

    async def note(self, principals: Sequence[str], note: str) -> None:
        """Add to what a person should know about these targets."""
        earlier = func.coalesce(col(JobTarget.note) + " ", "")
        await self._update(principals, note=earlier + note)

    async def fail_unfinished(self, code: str, message: str) -> None:
        """The job stopped: every target not yet finished fails with the job's reason."""
        await self._update(
            None, status=TargetStatus.FAILED, error_code=code, error_message=message[:2000]
        )

    async def counts(self) -> dict[TargetStatus, int]:
        """Every Region's targets (the job's status counts them all)."""
        query = (
            select(col(JobTarget.status), func.count())
            .where(col(JobTarget.job_id) == self.job_id)
            .group_by(col(JobTarget.status))
        )
        rows = (await self.session.execute(query)).all()
        return {TargetStatus(status): count for status, count in rows}

    async def _update(self, principals: Sequence[str] | None, **values: Any) -> None:
        if principals is not None and not principals:
            return
        now = utcnow()
        still_ours = exists().where(col(Job.id) == self.job_id, held_by(self.worker_id))
        statement = (
            update(JobTarget)
            .where(col(JobTarget.job_id) == self.job_id, still_ours)
            .values(updated_at=now, **values)
        )
        if principals is not None:
            statement = statement.where(col(JobTarget.principal).in_(principals))
        if self.region is not None:
            statement = statement.where(col(JobTarget.region) == self.region)
        statement = statement.where(col(JobTarget.status).in_(_UNFINISHED))
        await self.session.execute(statement)
        await self.session.execute(
            update(Job)
            .where(col(Job.id) == self.job_id)
            .values(version=col(Job.version) + 1, updated_at=now)
        )
