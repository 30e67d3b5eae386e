"""The share ledger: what is shared right now, kept by share and revoke jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Job, JobTarget, Share
from app.domain.types import Action, JobStatus, TargetStatus


@dataclass(frozen=True, slots=True)
class ShareFilter:
    image_id: str | None = None
    region: str | None = None
    principal: str | None = None


class ShareLedger:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, shares: Sequence[Share]) -> None:
        """Add or refresh shares: one row per (image, region, principal)."""
        if not shares:
            return
        await self.forget(shares[0].image_id, shares[0].region, [s.principal for s in shares])
        self.session.add_all(shares)
        await self.session.flush()

    async def forget(self, image_id: str, region: str, principals: Sequence[str]) -> None:
        await self.session.execute(
            delete(Share).where(
                col(Share.image_id) == image_id,
                col(Share.region) == region,
                col(Share.principal).in_(principals),
            )
        )

    async def of_principals(
        self, image_id: str, region: str, principals: Sequence[str]
    ) -> Sequence[Share]:
        query = select(Share).where(
            col(Share.image_id) == image_id,
            col(Share.region) == region,
            col(Share.principal).in_(principals),
        )
        return (await self.session.execute(query)).scalars().all()

    async def key_users_elsewhere(
        self, image_id: str, region: str, key_arn: str, principals: Sequence[str], job_id: str
    ) -> set[tuple[str, str]]:
        """(principal, kms_access) pairs among `principals` that still need `key_arn` for
        something other than this image: an active share of another image, or a share job
        not yet finished (it may be about to need the key; keeping access is the safe side)."""
        shares = select(col(Share.principal), col(Share.kms_access), col(Share.kms_key_ids)).where(
            col(Share.region) == region,
            col(Share.image_id) != image_id,
            col(Share.principal).in_(principals),
        )
        users = {
            (principal, kms_access)
            for principal, kms_access, key_ids in (await self.session.execute(shares)).all()
            if key_arn in key_ids
        }
        pending = (
            select(col(JobTarget.principal), col(Job.kms_access))
            .join(Job, col(Job.id) == col(JobTarget.job_id))
            .where(
                col(Job.action) == Action.SHARE,
                col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                col(Job.id) != job_id,
                col(Job.region) == region,
                col(JobTarget.principal).in_(principals),
                col(JobTarget.status).in_([TargetStatus.PENDING, TargetStatus.RUNNING]),
            )
        )
        users |= {(p, k) for p, k in (await self.session.execute(pending)).all()}
        return users

    async def page(
        self, filters: ShareFilter, limit: int, after: tuple[str, str, str] | None
    ) -> Sequence[Share]:
        """Ordered by (image, region, principal); `after` continues a previous page."""
        order = (col(Share.image_id), col(Share.region), col(Share.principal))
        query = select(Share).order_by(*order).limit(limit)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(*after))
        if filters.image_id:
            query = query.where(col(Share.image_id) == filters.image_id)
        if filters.region:
            query = query.where(col(Share.region) == filters.region)
        if filters.principal:
            query = query.where(col(Share.principal) == filters.principal)
        return (await self.session.execute(query)).scalars().all()
