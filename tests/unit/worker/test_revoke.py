"""A revoke job against the fakes (app/worker/revoke.py): every way in is taken back whatever
`kms_access` it names, except key access another share still needs; `none` leaves key access
and the ledger row that says so; and what was never shared is said to be so."""

from __future__ import annotations

import json

import pytest

from app.domain.codes import JobErrorCode, TargetErrorCode
from app.domain.principals import Principal
from app.domain.types import Action, JobStatus, KmsAccess, Step, TargetStatus
from app.worker.revoke import KEYS_LEFT_NOTE, NEVER_SHARED_NOTE
from tests.unit.fakes import Worker, account, root_arn

A, B = account("222222222222"), account("333333333333")
BY_POLICY, BY_GRANT, NONE = KmsAccess.KEY_POLICY, KmsAccess.GRANT, KmsAccess.NONE


@pytest.mark.parametrize("kms_access", [BY_POLICY, BY_GRANT])
async def test_a_revoke_takes_back_every_way_in_whatever_kms_access_it_names(
    worker: Worker, kms_access: KmsAccess
) -> None:
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    await worker.share(image, [A], kms_access=BY_GRANT)
    await worker.share(image, [A, B], kms_access=BY_POLICY)
    derived = source.add_grant(key, f"arn:aws:iam::{A.value}:role/autoscaling", issuer=A.value)
    assert source.policy_grantees(key) == {A.value, B.value}
    assert source.grant_grantees(key) == {A.value}

    job = await worker.revoke(image, [A], kms_access=kms_access)

    assert job.status is JobStatus.SUCCEEDED
    assert (job.target(A).step, job.target(A).note) == (Step.LEDGER, None)
    assert source.policy_grantees(key) == {B.value}
    assert source.grants[key] == []  # ours, found by name and recorded, and the derived one
    assert derived in {
        e.detail["grant_id"] for e in job.events if e.detail and "grant_id" in e.detail
    }
    assert source.launch_accounts(image) == {B.value}
    assert source.volume_permissions[snapshot] == {B.value}
    assert set(worker.ledger.rows(image)) == {B.value}
    assert set(worker.ledger.key_access) == {(key, B.value)}


@pytest.mark.parametrize("kms_access", [BY_POLICY, BY_GRANT])
async def test_key_access_another_active_share_needs_is_kept_with_a_note_naming_it(
    worker: Worker, kms_access: KmsAccess
) -> None:
    source = worker.source
    key = source.add_key()
    image_1, image_2 = source.add_image(key), source.add_image(key)
    await worker.share(image_1, [A, B], kms_access=kms_access)
    await worker.share(image_2, [A], kms_access=kms_access)

    job = await worker.revoke(image_1, [A, B], kms_access=kms_access)

    assert job.status is JobStatus.SUCCEEDED
    assert job.target(A).note == (
        f"Key access kept where another share still needs it: {key} by {image_2}."
    )
    assert job.target(B).note is None
    who = source.policy_grantees(key) | source.grant_grantees(key)
    assert who == {A.value}
    assert set(worker.ledger.key_access) == {(key, A.value)}
    assert source.launch_accounts(image_1) == set()
    assert source.launch_accounts(image_2) == {A.value}
    assert worker.ledger.rows(image_1) == {}
    assert set(worker.ledger.rows(image_2)) == {A.value}


async def test_key_access_an_unfinished_share_job_on_another_image_needs_is_kept(
    worker: Worker,
) -> None:
    source = worker.source
    key = source.add_key()
    image_1, image_2 = source.add_image(key), source.add_image(key)
    await worker.share(image_1, [A])
    waiting = worker.job(Action.SHARE, image_2, [A])  # queued: about to need the key

    job = await worker.revoke(image_1, [A])

    assert job.target(A).note == (
        f"Key access kept where another share still needs it: {key} by {waiting.spec.job_id}."
    )
    assert source.policy_grantees(key) == {A.value}


async def test_a_revoke_with_kms_access_none_keeps_key_access_and_the_row_that_says_so(
    worker: Worker,
) -> None:
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    shared = await worker.share(image, [A])

    kept = await worker.revoke(image, [A], kms_access=NONE)

    assert kept.status is JobStatus.SUCCEEDED
    assert kept.target(A).note == KEYS_LEFT_NOTE
    assert source.launch_accounts(image) == set()
    assert source.volume_permissions[snapshot] == set()
    assert source.policy_grantees(key) == {A.value}
    row = worker.ledger.rows(image)[A.value]
    assert (row.launch_permission, row.snapshot_ids, row.kms_key_ids) == (False, (), (key,))
    assert row.job_id == shared.spec.job_id
    assert worker.ledger.key_access[key, A.value].key_policy

    revoked = await worker.revoke(image, [A])

    assert revoked.status is JobStatus.SUCCEEDED
    assert revoked.target(A).note is None
    assert source.policy_grantees(key) == set()
    assert worker.ledger.shares == {} and worker.ledger.key_access == {}


async def test_a_revoke_of_what_was_never_shared_changes_nothing_and_says_so(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)

    job = await worker.revoke(image, [A, B])

    assert job.status is JobStatus.SUCCEEDED
    assert {(t.status, t.note) for t in job.targets.values()} == {
        (TargetStatus.SUCCEEDED, NEVER_SHARED_NOTE)
    }
    assert worker.aws.changes() == []
    assert worker.ledger.shares == {}


async def test_a_revoke_finds_what_aws_shows_by_name_though_the_ledger_has_nothing(
    worker: Worker,
) -> None:
    """As after a crash between a change and its record."""
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    source.launch[image].append(A)
    source.volume_permissions[snapshot].add(A.value)
    source.add_grant(key, root_arn(A.value), name=f"amishare-{A.value}")

    job = await worker.revoke(image, [A])

    assert job.status is JobStatus.SUCCEEDED
    assert job.target(A).note is None
    assert source.launch_accounts(image) == set()
    assert source.volume_permissions[snapshot] == set()
    assert source.grants[key] == []


async def test_a_grant_by_our_name_alone_is_found_and_revoked(worker: Worker) -> None:
    """As after a crash between CreateGrant and its record: AWS shows nothing else."""
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    worker.source.add_grant(key, root_arn(A.value), name=f"amishare-{A.value}")
    someone_elses = worker.source.add_grant(key, root_arn(A.value), name="their-own")

    job = await worker.revoke(image, [A])

    assert job.target(A).note is None
    assert [g.grant_id for g in worker.source.grants[key]] == [someone_elses]


async def test_a_revoke_of_a_deregistered_image_takes_back_what_the_ledger_remembers(
    worker: Worker,
) -> None:
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    await worker.share(image, [A])
    del source.images[image]
    launch_calls = len(worker.aws.calls_to("ec2:ModifyImageAttribute"))

    job = await worker.revoke(image, [A])

    assert job.status is JobStatus.SUCCEEDED
    assert len(worker.aws.calls_to("ec2:ModifyImageAttribute")) == launch_calls  # none left
    assert source.volume_permissions[snapshot] == set()
    assert source.policy_grantees(key) == set()
    assert worker.ledger.shares == {}


async def test_what_aws_refuses_to_take_back_fails_the_target_stays_recorded_and_a_retry_ends_it(
    worker: Worker,
) -> None:
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    await worker.share(image, [A, B], kms_access=BY_GRANT)
    worker.aws.fail("kms:RevokeGrant", "AccessDeniedException", principal=A.value, times=1)

    job = await worker.revoke(image, [A, B])

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    refused = job.target(A)
    assert (refused.status, refused.step, refused.error_code) == (
        TargetStatus.FAILED,
        Step.KMS_ACCESS,
        TargetErrorCode.ACCESS_DENIED,
    )
    assert refused.error_message is not None and refused.error_message.endswith("retry the job.")
    assert source.grant_grantees(key) == {A.value}
    assert source.launch_accounts(image) == set()
    assert set(worker.ledger.rows(image)) == {A.value}
    row = worker.ledger.rows(image)[A.value]
    assert (row.launch_permission, row.snapshot_ids, row.kms_key_ids) == (False, (), (key,))
    assert worker.ledger.key_access[key, A.value].grant_ids != ()

    again = await worker.revoke(image, [A])

    assert again.status is JobStatus.SUCCEEDED
    assert source.grants[key] == []
    assert worker.ledger.shares == {} and worker.ledger.key_access == {}


async def test_a_statement_with_our_sid_in_another_shape_fails_the_revoke_before_any_change(
    worker: Worker,
) -> None:
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    await worker.share(image, [A])
    policy = source.policy(key)
    ours = next(s for s in policy["Statement"] if s.get("Sid") == "AmiShareAccounts")
    ours["Condition"] = {"StringEquals": {"aws:PrincipalTag/team": "platform"}}
    source.policies[key] = json.dumps(policy)
    changes = len(worker.aws.changes())

    job = await worker.revoke(image, [A])

    assert job.failure is not None and job.failure.code is JobErrorCode.KEY_POLICY_CONFLICT
    assert "AmiShareAccounts" in job.failure.message
    assert len(worker.aws.changes()) == changes
    assert source.launch_accounts(image) == {A.value}
    assert source.policy(key) == policy


async def test_a_revoke_takes_back_what_the_ledger_records_though_a_lagging_view_lacks_it(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Just after a share, DescribeImageAttribute may not show the account yet: the ledger does,
    and the removal is sent whatever AWS shows."""
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    await worker.share(image, [A, B])

    async def lagging_launch(image_id: str) -> list[Principal]:
        return [B]

    async def lagging_snapshot(snapshot_id: str) -> set[str]:
        return {B.value}

    monkeypatch.setattr(source, "launch_permissions", lagging_launch)
    monkeypatch.setattr(source, "snapshot_permissions", lagging_snapshot)

    job = await worker.revoke(image, [A])

    assert job.status is JobStatus.SUCCEEDED
    assert job.target(A).note != NEVER_SHARED_NOTE
    assert source.launch[image] == [B]
    assert source.volume_permissions[snapshot] == {B.value}
    assert A.value not in source.policy_grantees(key)
