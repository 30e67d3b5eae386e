"""The audit trail of AWS changes, one `job_event` row each."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import JobEvent


class EventLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, events: Sequence[JobEvent]) -> None:
        """The rows in one multi-row INSERT (a thousand grants' rows through the ORM's unit of
        work took longer than the grants)."""
        if not events:
            return
        rows = [event.model_dump(exclude={"id"}) for event in events]
        await self.session.execute(insert(JobEvent), rows)

    async def page(self, job_id: str, limit: int, after_id: int | None) -> Sequence[JobEvent]:
        query = (
            select(JobEvent)
            .where(col(JobEvent.job_id) == job_id)
            .order_by(col(JobEvent.id))
            .limit(limit)
        )
        if after_id is not None:
            query = query.where(col(JobEvent.id) > after_id)
        return (await self.session.execute(query)).scalars().all()
