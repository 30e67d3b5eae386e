"""A job's status once its targets are finished (docs/api.md, "Job")."""

from __future__ import annotations

import pytest

from app.domain.outcome import final_job_status
from app.domain.types import JobStatus, TargetStatus

SUCCEEDED, FAILED, CANCELLED = TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.CANCELLED


@pytest.mark.parametrize(
    ("counts", "job_error", "status"),
    [
        pytest.param({SUCCEEDED: 3}, False, JobStatus.SUCCEEDED, id="all-succeeded"),
        pytest.param({}, False, JobStatus.SUCCEEDED, id="no-target-left"),
        pytest.param({SUCCEEDED: 2, FAILED: 1}, False, JobStatus.PARTIALLY_SUCCEEDED, id="some"),
        pytest.param({FAILED: 3}, False, JobStatus.FAILED, id="all-failed"),
        pytest.param({SUCCEEDED: 0, FAILED: 2}, False, JobStatus.FAILED, id="zero-counts"),
        pytest.param({SUCCEEDED: 2, CANCELLED: 1}, False, JobStatus.CANCELLED, id="cancelled"),
        pytest.param(
            {SUCCEEDED: 1, FAILED: 1, CANCELLED: 1}, False, JobStatus.CANCELLED, id="mixed-cancel"
        ),
        pytest.param({SUCCEEDED: 3}, True, JobStatus.FAILED, id="job-error-wins"),
        pytest.param({CANCELLED: 3}, True, JobStatus.FAILED, id="job-error-over-cancel"),
    ],
)
def test_the_job_status_follows_from_its_targets(
    counts: dict[TargetStatus, int], job_error: bool, status: JobStatus
) -> None:
    assert final_job_status(counts, job_error=job_error) is status
    assert status.is_finished
