"""Refreshes the database-backed gauges before metrics are rendered."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.stats import job_counts, live_leases, target_counts
from app.metrics import Metrics


async def refresh_gauges(session: AsyncSession, metrics: Metrics) -> None:
    metrics.set_counts(
        await job_counts(session), await target_counts(session), await live_leases(session)
    )
