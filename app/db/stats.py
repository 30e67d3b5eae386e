"""Counts for the metrics endpoint: one grouped query per table."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Job, JobTarget
from app.db.types import utcnow
from app.domain.types import JobStatus


async def job_counts(session: AsyncSession) -> dict[str, int]:
    query = select(col(Job.status), func.count()).group_by(col(Job.status))
    return {status: count for status, count in (await session.execute(query)).all()}


async def target_counts(session: AsyncSession) -> dict[str, int]:
    query = select(col(JobTarget.status), func.count()).group_by(col(JobTarget.status))
    return {status: count for status, count in (await session.execute(query)).all()}


async def live_leases(session: AsyncSession) -> int:
    query = select(func.count()).where(
        col(Job.status) == JobStatus.RUNNING, col(Job.lease_expires_at) > utcnow()
    )
    return int((await session.execute(query)).scalar_one())
