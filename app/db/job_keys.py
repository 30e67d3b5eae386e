"""The KMS keys behind the images of each job, as its worker found them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import JobKey


class JobKeys:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, job_id: str, key_arns: Sequence[str]) -> None:
        """Record keys (once each: every Region of a job adds its own, at the same time)."""
        if not key_arns:
            return
        rows = [{"job_id": job_id, "key_arn": k} for k in dict.fromkeys(key_arns)]
        dialect = self.session.bind.dialect.name if self.session.bind else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(JobKey).values(rows).on_conflict_do_nothing()
        await self.session.execute(statement)

    async def of(self, job_ids: Sequence[str]) -> dict[str, list[str]]:
        query = select(col(JobKey.job_id), col(JobKey.key_arn)).where(
            col(JobKey.job_id).in_(job_ids)
        )
        found: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
        for job_id, key_arn in (await self.session.execute(query)).all():
            found[job_id].append(key_arn)
        return found
