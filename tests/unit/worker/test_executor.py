"""The executor (app/worker/executor.py): the guardrails checked again before a job changes
anything, the source entered as the job's role session, and a job-level failure returned."""

from __future__ import annotations

from app.domain.codes import JobErrorCode, TargetErrorCode
from app.domain.types import Action, JobStatus, Step, TargetStatus
from tests.unit.fakes import SOURCE, FakeAws, Worker, account, fast_settings

A, B = account("222211112222"), account("333311112222")


async def test_a_destination_the_guardrail_no_longer_allows_fails_and_nothing_is_done_for_it() -> (
    None
):
    worker = Worker(settings=fast_settings(allowed_destinations=["2222*"]))
    image = worker.source.add_image(worker.source.add_key())

    job = await worker.share(image, [A, B])

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    refused = job.target(B)
    assert (refused.status, refused.step, refused.error_code) == (
        TargetStatus.FAILED,
        Step.PENDING,
        TargetErrorCode.DESTINATION_NOT_ALLOWED,
    )
    assert worker.source.launch_accounts(image) == {A.value}
    assert all(B.value not in c.principals for c in worker.aws.changes())


async def test_a_revoke_may_take_access_back_from_a_destination_no_longer_allowed() -> None:
    worker = Worker()
    image = worker.source.add_image(worker.source.add_key())
    await worker.share(image, [B])
    worker.settings = fast_settings(allowed_destinations=["2222*"])

    job = await worker.revoke(image, [B])

    assert job.status is JobStatus.SUCCEEDED
    assert worker.source.launch_accounts(image) == set()


async def test_a_source_no_longer_allowed_fails_the_job_without_an_aws_call() -> None:
    worker = Worker(settings=fast_settings(allowed_sources=["4444*"]))
    image = worker.source.add_image(worker.source.add_key())

    job = await worker.share(image, [A])

    assert job.failure is not None and job.failure.code is JobErrorCode.SOURCE_NOT_ALLOWED
    assert worker.aws.calls == []


async def test_the_source_is_entered_as_the_jobs_role_session() -> None:
    worker = Worker()
    image = worker.source.add_image(worker.source.add_key())

    job = await worker.share(image, [A])

    [session] = worker.aws.sessions
    assert session is not None
    assert (session.job_id, session.source_identity) == (job.spec.job_id, "ci")
    assert session.name == f"amishare-{job.spec.job_id}"


async def test_a_source_role_that_cannot_be_assumed_fails_the_job_once() -> None:
    worker = Worker(FakeAws())  # no source account: AssumeRole is refused
    job = worker.job(Action.SHARE, "ami-00000000000000001", [A])

    await worker.run(job)

    assert job.failure is not None
    assert job.failure.code is JobErrorCode.SOURCE_ROLE_UNAVAILABLE
    assert [c.outcome for c in worker.aws.calls] == ["AccessDenied"]
    assert SOURCE not in worker.aws.accounts


async def test_a_throttled_assume_role_is_retried() -> None:
    worker = Worker()
    image = worker.source.add_image(worker.source.add_key())
    worker.aws.fail("sts:AssumeRole", "Throttling", status=400, times=2)

    job = await worker.share(image, [A])

    assert job.status is JobStatus.SUCCEEDED
    assumed = [c.outcome for c in worker.aws.calls_to("sts:AssumeRole")]
    assert assumed == ["Throttling", "Throttling", "ok"]
