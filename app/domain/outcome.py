"""How a job's status follows from its targets (docs/api.md, "Job")."""

from __future__ import annotations

from collections.abc import Mapping

from app.domain.types import JobStatus, TargetStatus


def final_job_status(counts: Mapping[TargetStatus, int], *, job_error: bool) -> JobStatus:
    """The status of a job whose targets are all finished."""
    succeeded = counts.get(TargetStatus.SUCCEEDED, 0)
    failed = counts.get(TargetStatus.FAILED, 0)
    cancelled = counts.get(TargetStatus.CANCELLED, 0)
    if job_error:
        return JobStatus.FAILED
    if cancelled:
        return JobStatus.CANCELLED
    if failed and succeeded:
        return JobStatus.PARTIALLY_SUCCEEDED
    if failed:
        return JobStatus.FAILED
    return JobStatus.SUCCEEDED
