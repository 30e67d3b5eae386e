"""The in-memory recorder keeps the ledger as the database does: the same scenario, run on it
and on the SqlJobRecorder over an in-memory SQLite database, reads back the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from app.db.engine import make_session_factory
from app.db.models import Job, JobTarget, metadata
from app.domain.access import ShareRecord, ShareUpdate
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal
from app.domain.types import Action, JobStatus, KmsAccess, TargetStatus
from app.worker.ports import JobRecorder
from app.worker.sql_recorder import SqlJobRecorder
from tests.unit.fakes import REGION, SOURCE, InMemoryLedger, InMemoryRecorder, account

A, B = account("222222222222"), account("333333333333")
KEY = f"arn:aws:kms:{REGION}:{SOURCE}:key/key-0001"
SNAPSHOT = "snap-00000000000000001"


def spec(job_id: str, image_id: str, kms_access: KmsAccess = KmsAccess.KEY_POLICY) -> JobSpec:
    return JobSpec(job_id, Action.SHARE, image_id, REGION, SOURCE, kms_access, True, False, "ci")


class Ledger(Protocol):
    async def recorder(self, spec: JobSpec, targets: Sequence[Principal]) -> JobRecorder: ...


class Memory:
    def __init__(self) -> None:
        self.ledger = InMemoryLedger()

    async def recorder(self, spec: JobSpec, targets: Sequence[Principal]) -> JobRecorder:
        return InMemoryRecorder(spec, targets, self.ledger)


class Sqlite:
    """The database-backed recorder; each job gets its row and its targets (queued)."""

    def __init__(self) -> None:
        self.engine = create_async_engine("sqlite+aiosqlite:///:memory:", poolclass=StaticPool)
        self.sessions = make_session_factory(self.engine)

    async def recorder(self, spec: JobSpec, targets: Sequence[Principal]) -> JobRecorder:
        async with self.sessions.begin() as session:
            session.add(
                Job(
                    id=spec.job_id,
                    action=spec.action,
                    status=JobStatus.QUEUED,
                    image_id=spec.image_id,
                    region=spec.region,
                    source_account_id=spec.source_account_id,
                    kms_access=spec.kms_access,
                    share_snapshots=spec.share_snapshots,
                    verify=spec.verify,
                    created_by=spec.created_by,
                )
            )
            for position, target in enumerate(targets):
                session.add(
                    JobTarget(
                        job_id=spec.job_id,
                        position=position,
                        principal=target.value,
                        principal_type=target.type,
                        region=spec.region,
                        status=TargetStatus.PENDING,
                        step="pending",
                    )
                )
        return SqlJobRecorder(self.sessions, spec, worker_id="w-1")


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        yield Memory()
        return
    backend = Sqlite()
    async with backend.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield backend
    await backend.engine.dispose()


async def test_share_rows_merge_complete_and_settle_alike(ledger: Ledger) -> None:
    first = await ledger.recorder(spec("job-1", "ami-1"), [A, B])
    await first.record_shares(
        [ShareUpdate(A, kms_key_ids=(KEY,)), ShareUpdate(B, None, (), (KEY,))]
    )
    await first.record_shares([ShareUpdate(A, None, (SNAPSHOT,), (KEY,))])  # added, not doubled
    await first.record_shares([ShareUpdate(A, True)])

    assert await first.shares([A, B]) == {
        A: ShareRecord(A, True, (SNAPSHOT,), (KEY,), "job-1", KmsAccess.KEY_POLICY),
        B: ShareRecord(B, False, (), (KEY,), "job-1", KmsAccess.KEY_POLICY),
    }

    second = await ledger.recorder(spec("job-2", "ami-1", KmsAccess.GRANT), [A, B])
    await second.record_shares([ShareUpdate(A, True), ShareUpdate(B, True)])
    # A had launch permission already: still job-1's row; B's is given anew: job-2's.
    assert {p: r.job_id for p, r in (await second.shares([A, B])).items()} == {
        A: "job-1",
        B: "job-2",
    }
    await second.complete_shares([A])
    assert (await second.shares([A]))[A].job_id == "job-2"
    assert (await second.shares([A]))[A].kms_access is KmsAccess.GRANT

    left = ShareRecord(A, False, (), (KEY,), "ignored", KmsAccess.NONE)
    found_by_name = ShareRecord(account("444444444444"), False, (SNAPSHOT,), (), "x")
    await second.settle_shares([left, found_by_name], gone=[B])

    assert await second.shares([A, B, found_by_name.principal]) == {
        A: ShareRecord(A, False, (), (KEY,), "job-2", KmsAccess.GRANT),
        found_by_name.principal: ShareRecord(
            found_by_name.principal, False, (SNAPSHOT,), (), "job-2", KmsAccess.GRANT
        ),
    }
    other_image = await ledger.recorder(spec("job-3", "ami-2"), [A])
    assert await other_image.shares([A]) == {}


async def test_key_access_merges_and_is_forgotten_alike(ledger: Ledger) -> None:
    job = await ledger.recorder(spec("job-1", "ami-1"), [A, B])

    await job.record_key_access(KEY, [A], key_policy=True)
    await job.record_key_access(KEY, [A, B], grant_ids={A: "grant-1", B: "grant-2"})
    await job.record_key_access(KEY, [A], grant_ids={A: "grant-1"})
    await job.record_key_access(KEY, [A], grant_ids={A: "grant-3"})
    found = await job.key_access(KEY, [A, B])

    assert {p: (a.key_policy, a.grant_ids) for p, a in found.items()} == {
        A: (True, ("grant-1", "grant-3")),
        B: (False, ("grant-2",)),
    }
    await job.forget_key_access(KEY, [B])
    assert set(await job.key_access(KEY, [A, B])) == {A}
    assert await job.key_access(KEY.replace("0001", "0002"), [A]) == {}


async def test_a_key_is_needed_elsewhere_by_active_shares_and_unfinished_share_jobs_alike(
    ledger: Ledger,
) -> None:
    elsewhere = await ledger.recorder(spec("job-1", "ami-2"), [A])
    await elsewhere.record_shares([ShareUpdate(A, True, (), (KEY,))])
    await ledger.recorder(spec("job-2", "ami-3"), [B])  # queued, B still pending
    not_launchable = await ledger.recorder(spec("job-3", "ami-4"), [])
    await not_launchable.record_shares([ShareUpdate(B, False, (), (KEY,))])

    revoke = await ledger.recorder(spec("job-4", "ami-1"), [A, B])

    # job-1 has not finished either (its row is launchable already: ami-2 too).
    needed = {A: ["ami-2", "job-1"], B: ["job-2"]}
    assert await revoke.key_needed_elsewhere(KEY, [A, B]) == needed
    # Another key: no share needs it, but an unfinished share job may be about to.
    assert await revoke.key_needed_elsewhere(KEY.replace("0001", "0002"), [A]) == {A: ["job-1"]}
