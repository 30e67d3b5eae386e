"""A reconcile job against the fakes (app/worker/reconcile.py): the drift it finds between the
ledger and the source account, and what repair and prune send to fix it."""

from __future__ import annotations

from app.domain.types import JobStatus, KmsAccess, Step, TargetStatus
from app.worker.reconcile import UNRECORDED_NOTE
from tests.unit.fakes import Worker, account

A, B, C = account("222222222222"), account("333333333333"), account("444444444444")


def apis(worker: Worker, since: int = 0) -> list[str]:
    return [c.api for c in worker.aws.changes()[since:]]


async def shared(worker: Worker, *, kms_access: KmsAccess = KmsAccess.KEY_POLICY) -> str:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    job = await worker.share(image, [A, B], kms_access=kms_access)
    assert job.status is JobStatus.SUCCEEDED, job.targets
    return image


async def test_drift_names_what_each_principal_lost_and_who_was_shared_by_hand(
    worker: Worker,
) -> None:
    image = await shared(worker)
    source = worker.source
    (snapshot,) = source.images[image].snapshot_ids
    source.launch[image] = [p for p in source.launch[image] if p != A]  # removed by hand
    source.volume_permissions[snapshot].discard(B.value)
    source.launch[image].append(C)  # added by hand
    before = len(worker.aws.changes())

    job = await worker.reconcile(image)

    assert job.status is JobStatus.SUCCEEDED
    assert set(job.targets) == {A, B, C}  # the ledger's two, then the one only AWS shows
    assert job.target(A).drift == {"missing": ["launch_permission"], "unrecorded": False}
    assert job.target(B).drift == {"missing": ["snapshots"], "unrecorded": False}
    assert job.target(C).drift == {"missing": [], "unrecorded": True}
    assert job.target(C).note == UNRECORDED_NOTE
    assert {(t.status, t.step) for t in job.targets.values()} == {
        (TargetStatus.SUCCEEDED, Step.LEDGER)
    }
    assert apis(worker, before) == []


async def test_repair_sends_only_what_is_missing(worker: Worker) -> None:
    image = await shared(worker)
    source = worker.source
    source.launch[image] = [p for p in source.launch[image] if p != A]
    source.launch[image].append(C)
    before = len(worker.aws.changes())

    job = await worker.reconcile(image, repair=True)

    assert job.status is JobStatus.SUCCEEDED
    assert apis(worker, before) == ["ec2:ModifyImageAttribute"]
    assert source.launch_accounts(image) == {A.value, B.value, C.value}
    assert (job.target(A).status, job.target(A).step) == (TargetStatus.SUCCEEDED, Step.LEDGER)
    assert worker.ledger.rows(image).keys() == {A.value, B.value}  # C is not adopted


async def test_prune_takes_back_the_unknown_share_and_nothing_else(worker: Worker) -> None:
    image = await shared(worker)
    source = worker.source
    (snapshot,) = source.images[image].snapshot_ids
    source.launch[image].append(C)
    source.volume_permissions[snapshot].add(C.value)

    job = await worker.reconcile(image, prune=True)

    assert job.status is JobStatus.SUCCEEDED
    assert source.launch_accounts(image) == {A.value, B.value}
    assert source.volume_permissions[snapshot] == {A.value, B.value}
    assert job.target(C).drift == {"missing": [], "unrecorded": True}


async def test_a_recorded_grant_gone_from_the_key_is_missing_key_access(worker: Worker) -> None:
    image = await shared(worker, kms_access=KmsAccess.GRANT)
    (key,) = worker.source.keys
    worker.source.grants[key] = [
        g for g in worker.source.grants[key] if not g.grantee_principal.endswith(f":{A.value}:root")
    ]

    found = await worker.reconcile(image)
    assert found.target(A).drift == {"missing": ["kms_access"], "unrecorded": False}
    assert found.target(B).drift is None

    await worker.reconcile(image, repair=True)

    assert A.value in worker.source.grant_grantees(key)
    again = await worker.reconcile(image)
    assert again.target(A).drift is None


async def test_key_access_a_revoke_left_in_place_is_reported_not_reshared(
    worker: Worker,
) -> None:
    image = await shared(worker)
    revoked = await worker.revoke(image, [A], kms_access=KmsAccess.NONE)
    assert revoked.status is JobStatus.SUCCEEDED
    (key,) = worker.source.keys
    statement_before = worker.source.policy(key)
    before = len(worker.aws.changes())

    job = await worker.reconcile(image, [A], repair=True)

    assert job.target(A).drift is None  # no launch permission recorded, key access still there
    assert apis(worker, before) == []
    assert worker.source.policy(key) == statement_before
    assert A.value not in worker.source.launch_accounts(image)


async def test_named_targets_limit_the_reconcile_to_them(worker: Worker) -> None:
    image = await shared(worker)
    worker.source.launch[image].append(C)

    job = await worker.reconcile(image, [B])

    assert set(job.targets) == {B}
    assert job.target(B).drift is None
