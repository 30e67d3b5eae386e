"""A share job against the fakes (app/worker/share.py): what lands on the source account, in how
many calls, what the ledger says, and what is taken back from a target that cannot finish."""

from __future__ import annotations

import json

import pytest

from app.domain.codes import JobErrorCode, TargetErrorCode
from app.domain.principals import Principal
from app.domain.types import Action, JobStatus, KmsAccess, Step, TargetStatus
from app.worker.share import CANCELLED_NOTE, SNAPSHOT_ORG_NOTE, UNDONE_NOTE
from app.worker.steps import grant_name
from tests.unit.fakes import (
    LOCKOUT_MESSAGE,
    Worker,
    account,
    organization,
    root_arn,
)

A, B, C = account("222222222222"), account("333333333333"), account("444444444444")
ORG = organization()


def apis(worker: Worker) -> list[tuple[str, str]]:
    """(api, resource) of every modification that landed."""
    return [(c.api, c.resource) for c in worker.aws.changes()]


async def test_a_share_by_key_policy_is_one_call_per_key_snapshot_and_batch(
    worker: Worker,
) -> None:
    key_1, key_2 = worker.source.add_key(), worker.source.add_key()
    image = worker.source.add_image(key_1, key_2)
    snap_1, snap_2 = worker.source.images[image].snapshot_ids

    job = await worker.share(image, [A, B, C, ORG])

    assert job.status is JobStatus.SUCCEEDED, job.targets
    assert apis(worker) == [
        ("kms:PutKeyPolicy", key_1),
        ("kms:PutKeyPolicy", key_2),
        ("ec2:ModifySnapshotAttribute", snap_1),
        ("ec2:ModifySnapshotAttribute", snap_2),
        ("ec2:ModifyImageAttribute", image),
    ]
    source = worker.source
    for key_arn in (key_1, key_2):
        assert source.policy_grantees(key_arn) == {A.value, B.value, C.value, "o-abcdefghij"}
        assert source.grants[key_arn] == []
    for snapshot_id in (snap_1, snap_2):
        assert source.volume_permissions[snapshot_id] == {A.value, B.value, C.value}
    assert source.launch_accounts(image) == {A.value, B.value, C.value, ORG.value}


async def test_a_share_records_every_target_its_ledger_row_and_its_key_access(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    (snapshot,) = worker.source.images[image].snapshot_ids

    job = await worker.share(image, [A, ORG])

    assert {(t.status, t.step, t.attempts) for t in job.targets.values()} == {
        (TargetStatus.SUCCEEDED, Step.LEDGER, 1)
    }
    assert job.target(A).note is None
    assert job.target(ORG).note == SNAPSHOT_ORG_NOTE
    rows = worker.ledger.rows(image)
    assert set(rows) == {A.value, ORG.value}
    assert (rows[A.value].launch_permission, rows[A.value].job_id) == (True, job.spec.job_id)
    assert rows[A.value].snapshot_ids == (snapshot,)
    assert rows[ORG.value].snapshot_ids == ()  # no organization form of createVolumePermission
    assert rows[A.value].kms_key_ids == rows[ORG.value].kms_key_ids == (key,)
    assert {(k, p) for (k, p) in worker.ledger.key_access} == {(key, A.value), (key, ORG.value)}
    assert all(a.key_policy and a.grant_ids == () for a in worker.ledger.key_access.values())
    audited = [(e.api, e.resource, e.outcome) for e in job.events]
    assert audited == [(c.api, c.resource, "ok") for c in worker.aws.changes()]
    assert job.events[0].detail == {"added": sorted([A.value, "o-abcdefghij"])}


async def test_a_share_by_grant_makes_one_named_grant_per_account_and_key_and_no_statement(
    worker: Worker,
) -> None:
    key_1, key_2 = worker.source.add_key(), worker.source.add_key()
    policies = dict(worker.source.policies)
    image = worker.source.add_image(key_1, key_2)

    job = await worker.share(image, [A, B], kms_access=KmsAccess.GRANT)

    assert job.status is JobStatus.SUCCEEDED
    creates = worker.aws.calls_to("kms:CreateGrant")
    assert sorted((c.resource, c.principals) for c in creates) == sorted(
        (key, (p.value,)) for key in (key_1, key_2) for p in (A, B)
    )
    for key_arn in (key_1, key_2):
        grants = worker.source.grants[key_arn]
        assert {(g.name, g.grantee_principal) for g in grants} == {
            (f"amishare-{p.value}", root_arn(p.value)) for p in (A, B)
        }
        recorded = {p: worker.ledger.key_access[key_arn, p].grant_ids for p in (A.value, B.value)}
        by_grantee = {g.grantee_principal.split(":")[4]: (g.grant_id,) for g in grants}
        assert recorded == by_grantee
    assert worker.source.policies == policies
    assert not worker.aws.calls_to("kms:PutKeyPolicy")


async def test_launch_and_snapshot_permission_go_in_batches_of_500(worker: Worker) -> None:
    image = worker.source.add_image(None)  # unencrypted: no key to share
    targets = [account(f"2{n:011d}") for n in range(501)]

    job = await worker.share(image, targets)

    assert job.status is JobStatus.SUCCEEDED
    changes = worker.aws.changes()
    assert sorted((c.api, len(c.principals)) for c in changes) == [
        ("ec2:ModifyImageAttribute", 1),
        ("ec2:ModifyImageAttribute", 500),
        ("ec2:ModifySnapshotAttribute", 1),
        ("ec2:ModifySnapshotAttribute", 500),
    ]
    assert len(worker.source.launch_accounts(image)) == 501


async def test_a_target_aws_refuses_in_the_key_policy_fails_alone(worker: Worker) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    worker.aws.refuse("kms:PutKeyPolicy", B.value)

    job = await worker.share(image, [A, B, C])

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    refused = job.target(B)
    assert (refused.status, refused.step, refused.error_code) == (
        TargetStatus.FAILED,
        Step.KMS_ACCESS,
        TargetErrorCode.INVALID_ACCOUNT_ID,
    )
    assert worker.source.policy_grantees(key) == {A.value, C.value}
    assert worker.source.launch_accounts(image) == {A.value, C.value}
    assert set(worker.ledger.rows(image)) == {A.value, C.value}
    refusals = [c.outcome for c in worker.aws.calls_to("kms:PutKeyPolicy") if c.outcome != "ok"]
    assert refusals  # every refused call is audited
    assert [e.outcome for e in job.events if e.outcome != "ok"] == refusals


async def test_a_target_refused_at_launch_permission_has_its_key_and_snapshot_access_taken_back(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    (snapshot,) = worker.source.images[image].snapshot_ids
    worker.aws.refuse("ec2:ModifyImageAttribute", B.value)

    job = await worker.share(image, [A, B])

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    refused = job.target(B)
    assert (refused.status, refused.step, refused.error_code) == (
        TargetStatus.FAILED,
        Step.LAUNCH_PERMISSION,
        TargetErrorCode.INVALID_ACCOUNT_ID,
    )
    assert refused.error_message is not None and refused.error_message.endswith(UNDONE_NOTE)
    assert job.target(A).status is TargetStatus.SUCCEEDED
    assert worker.source.policy_grantees(key) == {A.value}
    assert worker.source.volume_permissions[snapshot] == {A.value}
    assert worker.source.launch_accounts(image) == {A.value}
    assert set(worker.ledger.rows(image)) == {A.value}
    assert set(worker.ledger.key_access) == {(key, A.value)}
    removed = [e.detail for e in job.events if e.api == "kms:PutKeyPolicy"]
    assert removed == [{"added": [A.value, B.value]}, {"removed": [B.value]}]


async def test_a_target_refused_at_snapshots_has_its_key_access_taken_back(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key, key)
    worker.aws.refuse("ec2:ModifySnapshotAttribute", B.value)

    job = await worker.share(image, [A, B], kms_access=KmsAccess.GRANT)

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    assert (job.target(B).step, job.target(B).error_code) == (
        Step.SNAPSHOTS,
        TargetErrorCode.INVALID_ACCOUNT_ID,
    )
    assert worker.source.grant_grantees(key) == {A.value}
    assert all(held == {A.value} for held in worker.source.volume_permissions.values())
    assert worker.source.launch_accounts(image) == {A.value}
    assert set(worker.ledger.rows(image)) == {A.value}


async def test_a_job_level_failure_on_the_second_key_takes_back_the_first(
    worker: Worker,
) -> None:
    key_1, key_2 = worker.source.add_key(), worker.source.add_key()
    before = worker.source.policy(key_1)
    image = worker.source.add_image(key_1, key_2)
    worker.aws.fail(
        "kms:PutKeyPolicy", "MalformedPolicyDocumentException", LOCKOUT_MESSAGE, resource=key_2
    )

    job = await worker.share(image, [A, B])

    assert job.failure is not None and job.failure.code is JobErrorCode.KEY_POLICY_REJECTED
    assert job.status is JobStatus.FAILED
    assert worker.source.policy(key_1) == before
    assert worker.source.launch_accounts(image) == set()
    assert all(not held for held in worker.source.volume_permissions.values())
    assert worker.ledger.shares == {} and worker.ledger.key_access == {}
    edits = [(e.resource, e.outcome, e.detail) for e in job.events if e.api == "kms:PutKeyPolicy"]
    assert edits == [
        (key_1, "ok", {"added": [A.value, B.value]}),
        (key_2, "MalformedPolicyDocumentException", {"added": [A.value, B.value]}),
        (key_1, "ok", {"removed": [A.value, B.value]}),
    ]
    for target in job.targets.values():
        assert target.error_code == JobErrorCode.KEY_POLICY_REJECTED
        assert target.note == UNDONE_NOTE


async def test_a_cancel_between_steps_undoes_what_was_done(worker: Worker) -> None:
    key = worker.source.add_key()
    before = worker.source.policy(key)
    image = worker.source.add_image(key)
    job = worker.job(Action.SHARE, image, [A, B])
    worker.aws.after("kms:PutKeyPolicy", lambda: setattr(job, "cancelled", True))

    await worker.run(job)

    assert job.failure is None
    assert job.status is JobStatus.CANCELLED
    assert {(t.status, t.note) for t in job.targets.values()} == {
        (TargetStatus.CANCELLED, CANCELLED_NOTE)
    }
    assert worker.source.policy(key) == before
    assert worker.source.launch_accounts(image) == set()
    assert all(not held for held in worker.source.volume_permissions.values())
    given = [e.detail for e in job.events if e.api.startswith("ec2:")]
    assert {"operation": "add"} not in given  # cancelled before snapshots: none were given
    assert worker.ledger.shares == {} and worker.ledger.key_access == {}


async def test_a_cancel_takes_back_a_grant_an_earlier_attempt_made_and_never_recorded(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    # What a worker killed after CreateGrant and before recording the grant ID leaves: a grant
    # by our deterministic name that only AWS knows.
    left = worker.source.add_grant(key, root_arn(A.value), name=grant_name(A.value))
    job = worker.job(Action.SHARE, image, [A], kms_access=KmsAccess.GRANT)
    job.cancelled = True  # cancelled while no worker held it; the next attempt finds that

    await worker.run(job)

    assert job.status is JobStatus.CANCELLED
    assert worker.source.grants[key] == []
    # (The undo also removes launch and snapshot permission, whatever AWS shows: nothing.)
    assert [c for c in apis(worker) if c[0].startswith("kms:")] == [("kms:RevokeGrant", key)]
    [revoked] = [e for e in job.events if e.api == "kms:RevokeGrant"]
    assert revoked.detail is not None and revoked.detail["grant_id"] == left
    assert worker.ledger.shares == {} and worker.ledger.key_access == {}


async def test_a_target_that_had_the_share_before_keeps_it_when_this_job_cannot_finish(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    (snapshot,) = worker.source.images[image].snapshot_ids
    first = await worker.share(image, [A])
    worker.aws.fail("ec2:ModifySnapshotAttribute", "OperationNotPermitted", times=1)

    again = await worker.share(image, [A, B])

    assert first.status is JobStatus.SUCCEEDED
    assert again.failure is not None and again.failure.code is JobErrorCode.AWS_ERROR
    assert again.target(B).note == UNDONE_NOTE and again.target(A).note is None
    assert worker.source.policy_grantees(key) == {A.value}
    assert worker.source.volume_permissions[snapshot] == {A.value}
    assert worker.source.launch_accounts(image) == {A.value}
    assert set(worker.ledger.rows(image)) == {A.value}
    assert worker.ledger.rows(image)[A.value].job_id == first.spec.job_id


async def test_throttled_calls_are_retried_and_the_share_lands_once(worker: Worker) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    for api in ("kms:GetKeyPolicy", "kms:PutKeyPolicy", "ec2:ModifyImageAttribute"):
        worker.aws.throttle(api, times=2)

    job = await worker.share(image, [A, B])

    assert job.status is JobStatus.SUCCEEDED
    assert [c.outcome for c in worker.aws.calls_to("kms:PutKeyPolicy")] == [
        "ThrottlingException",
        "ThrottlingException",
        "ok",
    ]
    assert len(worker.aws.changes()) == 3


@pytest.mark.parametrize(
    ("shape", "code"),
    [
        ({"state": "pending"}, JobErrorCode.IMAGE_NOT_AVAILABLE),
        ({"root_device_type": "instance-store"}, JobErrorCode.INSTANCE_STORE_NOT_SUPPORTED),
        ({"owner_id": "555555555555"}, JobErrorCode.IMAGE_NOT_OWNED),
    ],
)
async def test_an_image_that_cannot_be_shared_fails_the_job_before_any_change(
    worker: Worker, shape: dict[str, str], code: JobErrorCode
) -> None:
    image = worker.source.add_image(worker.source.add_key(), **shape)

    job = await worker.share(image, [A])

    assert job.failure is not None and job.failure.code is code
    assert worker.aws.changes() == []


async def test_an_aws_managed_key_or_a_missing_image_fails_the_job_before_any_change(
    worker: Worker,
) -> None:
    managed = worker.source.add_image(worker.source.add_key(aws_managed=True))

    jobs = [await worker.share(managed, [A]), await worker.share("ami-0000000000000dead", [A])]

    assert [j.failure.code if j.failure else None for j in jobs] == [
        JobErrorCode.AWS_MANAGED_KEY,
        JobErrorCode.IMAGE_NOT_FOUND,
    ]
    assert worker.aws.changes() == []


async def test_a_statement_with_our_sid_in_another_shape_fails_the_share_before_any_change(
    worker: Worker,
) -> None:
    policy = worker.source.default_policy()
    policy["Statement"].append(
        {
            "Sid": "AmiShareAccounts",
            "Effect": "Deny",
            "Principal": {"AWS": root_arn("999999999999")},
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
            "Resource": "*",
        }
    )
    key = worker.source.add_key(policy=policy)
    image = worker.source.add_image(key)

    job = await worker.share(image, [A])

    assert job.failure is not None and job.failure.code is JobErrorCode.KEY_POLICY_CONFLICT
    assert "AmiShareAccounts" in job.failure.message
    assert worker.aws.changes() == []
    assert json.loads(worker.source.policies[key]) == policy


async def test_a_share_verified_from_each_destination_succeeds_once_it_sees_image_and_key(
    worker: Worker,
) -> None:
    image = worker.source.add_image(worker.source.add_key())

    job = await worker.share(image, [A, ORG], verify=True)

    assert job.status is JobStatus.SUCCEEDED
    looked = {(c.account, c.api) for c in worker.aws.calls if c.account == A.value}
    assert looked == {(A.value, "ec2:DescribeImages"), (A.value, "kms:DescribeKey")}
    assert job.target(ORG).note is not None and "Not verified" in job.target(ORG).note


async def test_a_destination_that_cannot_be_entered_fails_verification_and_is_undone(
    worker: Worker,
) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    worker.aws.refuse("sts:AssumeRole", B.value)

    job = await worker.share(image, [A, B], verify=True)

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED
    refused = job.target(B)
    assert (refused.step, refused.error_code) == (
        Step.VERIFY,
        TargetErrorCode.DESTINATION_ROLE_UNAVAILABLE,
    )
    assert worker.source.launch_accounts(image) == {A.value}
    assert worker.source.policy_grantees(key) == {A.value}
    assert set(worker.ledger.rows(image)) == {A.value}


async def test_taking_back_a_refused_target_that_stops_does_not_stop_the_others(
    worker: Worker,
) -> None:
    """B is refused launch permission and taking back its key access stays throttled: B fails,
    what it keeps stays recorded, and A, whose share landed, succeeds."""
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    worker.aws.refuse("ec2:ModifyImageAttribute", B.value)
    # Once launch permission has landed for A, KMS keeps throttling every edit naming B.
    worker.aws.after(
        "ec2:ModifyImageAttribute",
        lambda: worker.aws.throttle("kms:PutKeyPolicy", times=None, principal=B.value),
    )

    job = await worker.share(image, [A, B])

    assert job.status is JobStatus.PARTIALLY_SUCCEEDED, job.targets
    assert job.target(A).status is TargetStatus.SUCCEEDED
    refused = job.target(B)
    assert (refused.status, refused.error_code) == (
        TargetStatus.FAILED,
        TargetErrorCode.INVALID_ACCOUNT_ID,
    )
    assert refused.error_message is not None and "stopped" in refused.error_message
    assert worker.source.policy_grantees(key) == {A.value, B.value}  # B's: recorded, remains
    assert worker.source.launch_accounts(image) == {A.value}
    assert set(worker.ledger.rows(image)) == {A.value, B.value}


async def test_a_share_resumed_after_a_crash_changes_only_what_is_missing(worker: Worker) -> None:
    key = worker.source.add_key()
    image = worker.source.add_image(key)
    job = worker.job(Action.SHARE, image, [A, B], kms_access=KmsAccess.GRANT)

    crashes = [RuntimeError("the worker died")]  # once, right after the snapshots landed

    def crash() -> None:
        if crashes:
            raise crashes.pop()

    worker.aws.after("ec2:ModifySnapshotAttribute", crash)
    with pytest.raises(RuntimeError):
        await worker.run(job)
    grants = list(worker.source.grants[key])
    assert len(grants) == 2 and worker.source.launch_accounts(image) == set()

    await worker.run(job)  # the same job, claimed again

    assert job.status is JobStatus.SUCCEEDED
    assert {t.attempts for t in job.targets.values()} == {2}
    assert worker.source.grants[key] == grants  # the same named grants, none added
    assert worker.source.launch_accounts(image) == {A.value, B.value}
    assert {r.job_id for r in worker.ledger.rows(image).values()} == {job.spec.job_id}


async def test_a_share_right_after_a_revoke_gives_again_what_a_lagging_view_still_shows(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 is eventually consistent: just after a revoke, DescribeImageAttribute may still show
    the account. The ledger says it was taken back, so the share sends it again."""
    source = worker.source
    key = source.add_key()
    image = source.add_image(key)
    (snapshot,) = source.images[image].snapshot_ids
    await worker.share(image, [A])
    await worker.revoke(image, [A])
    assert source.launch_accounts(image) == set()

    async def stale_launch(image_id: str) -> list[Principal]:
        return [A]

    async def stale_snapshot(snapshot_id: str) -> set[str]:
        return {A.value}

    monkeypatch.setattr(source, "launch_permissions", stale_launch)
    monkeypatch.setattr(source, "snapshot_permissions", stale_snapshot)

    again = await worker.share(image, [A])

    assert again.status is JobStatus.SUCCEEDED
    assert source.launch_accounts(image) == {A.value}
    assert source.volume_permissions[snapshot] == {A.value}
