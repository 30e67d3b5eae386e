"""action: reconcile — the ledger of one image against AWS, after someone changed AWS by hand."""

from __future__ import annotations

from typing import Any

from app.domain.key_policy import render_policy
from app.sandbox import seed
from app.sandbox.seed import SeededImage, SeededKey
from app.worker.reconcile import UNRECORDED_NOTE
from tests.conftest import REGION, Service, new_account_ids
from tests.e2e.aws_state import (
    grants_by_account,
    key_policy,
    launch_permission_accounts,
    mutating_calls,
    policy_accounts,
    snapshot_accounts,
)
from tests.e2e.test_revoke import run_job


def shared_image(service: Service) -> tuple[SeededKey, SeededImage]:
    key = seed.create_customer_key(service.double.url)
    return key, seed.create_encrypted_image(service.double.url, key.key_id)


def set_launch_permission(service: Service, image_id: str, change: str, account_id: str) -> None:
    seed.ec2_client(service.double.url, REGION).modify_image_attribute(
        ImageId=image_id, LaunchPermission={change: [{"UserId": account_id}]}
    )


def drop_from_key_policy(service: Service, key_id: str, account_id: str) -> None:
    """What a person editing the key policy by hand might do: take one account out of the
    service's statements."""
    policy = key_policy(service.double, key_id)
    for statement in policy["Statement"]:
        if not statement.get("Sid", "").startswith("AmiShareAccounts"):
            continue
        principals = statement["Principal"]["AWS"]
        principals = [principals] if isinstance(principals, str) else principals
        statement["Principal"]["AWS"] = [p for p in principals if f":{account_id}:" not in p]
    seed.kms_client(service.double.url, REGION).put_key_policy(
        KeyId=key_id, PolicyName="default", Policy=render_policy(policy)
    )


async def reconcile_targets(service: Service, job_id: str) -> dict[str, dict[str, Any]]:
    return {t["principal"]: t for t in await service.targets(job_id)}


async def reconcile(service: Service, image_id: str, **body: Any) -> dict[str, Any]:
    return await run_job(service, action="reconcile", image_id=image_id, **body)


async def test_reconcile_reports_a_permission_removed_and_an_account_added_by_hand(
    service: Service,
) -> None:
    _, image = shared_image(service)
    kept, removed, added = new_account_ids(3)
    shared = await run_job(service, image_id=image.image_id, account_ids=[kept, removed])
    assert shared["status"] == "succeeded", shared
    set_launch_permission(service, image.image_id, "Remove", removed)
    set_launch_permission(service, image.image_id, "Add", added)
    since = len(service.double.requests())

    job = await reconcile(service, image.image_id)

    assert job["status"] == "succeeded", job
    assert (job["repair"], job["prune"]) == (False, False)
    targets = await reconcile_targets(service, job["id"])
    assert set(targets) == {kept, removed, added}
    assert targets[kept]["drift"] is None
    assert targets[removed]["drift"] == {"missing": ["launch_permission"], "unrecorded": False}
    assert targets[added]["drift"] == {"missing": [], "unrecorded": True}
    assert targets[added]["note"] == UNRECORDED_NOTE
    assert {t["status"] for t in targets.values()} == {"succeeded"}
    assert mutating_calls(service.double, since) == []
    assert launch_permission_accounts(service.double, image.image_id) == {kept, added}


async def test_repair_shares_the_lost_account_again_and_leaves_the_unknown_one(
    service: Service,
) -> None:
    _, image = shared_image(service)
    kept, removed, added = new_account_ids(3)
    await run_job(service, image_id=image.image_id, account_ids=[kept, removed])
    set_launch_permission(service, image.image_id, "Remove", removed)
    set_launch_permission(service, image.image_id, "Add", added)
    since = len(service.double.requests())

    job = await reconcile(service, image.image_id, repair=True)

    assert job["status"] == "succeeded", job
    assert launch_permission_accounts(service.double, image.image_id) == {kept, removed, added}
    # Only what was missing is sent: the key and snapshots still had it.
    assert mutating_calls(service.double, since) == ["ec2:ModifyImageAttribute"]
    targets = await reconcile_targets(service, job["id"])
    assert targets[removed]["drift"] == {"missing": ["launch_permission"], "unrecorded": False}
    assert targets[added]["drift"] == {"missing": [], "unrecorded": True}
    # A second reconcile finds the ledger and AWS agreeing on the repaired account.
    again = await reconcile_targets(
        service, (await reconcile(service, image.image_id, account_ids=[removed]))["id"]
    )
    assert again[removed]["drift"] is None


async def test_prune_takes_back_the_share_the_ledger_does_not_know(service: Service) -> None:
    key, image = shared_image(service)
    kept, added = new_account_ids(2)
    await run_job(service, image_id=image.image_id, account_ids=[kept])
    set_launch_permission(service, image.image_id, "Add", added)
    seed.ec2_client(service.double.url, REGION).modify_snapshot_attribute(
        SnapshotId=image.snapshot_ids[0],
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[added],
    )

    job = await reconcile(service, image.image_id, prune=True)

    assert job["status"] == "succeeded", job
    assert launch_permission_accounts(service.double, image.image_id) == {kept}
    assert snapshot_accounts(service.double, image.snapshot_ids[0]) == {kept}
    assert policy_accounts(key_policy(service.double, key.key_id)) == {kept}
    targets = await reconcile_targets(service, job["id"])
    assert targets[added]["drift"] == {"missing": [], "unrecorded": True}
    assert targets[added]["step"] == "ledger"
    shares = (await service.client.get("/v1/shares", params={"image_id": image.image_id})).json()
    assert {s["principal"] for s in shares["items"]} == {kept}


async def test_a_key_policy_statement_removed_by_hand_is_missing_key_access_and_repaired(
    service: Service,
) -> None:
    key, image = shared_image(service)
    a, b = new_account_ids(2)
    await run_job(service, image_id=image.image_id, account_ids=[a, b])
    drop_from_key_policy(service, key.key_id, a)

    found = await reconcile_targets(service, (await reconcile(service, image.image_id))["id"])
    assert found[a]["drift"] == {"missing": ["kms_access"], "unrecorded": False}
    assert found[b]["drift"] is None

    repaired = await reconcile(service, image.image_id, account_ids=[a], repair=True)

    assert repaired["status"] == "succeeded", repaired
    assert policy_accounts(key_policy(service.double, key.key_id)) == {a, b}


async def test_a_recorded_grant_revoked_by_hand_is_missing_and_repair_makes_a_new_one(
    service: Service,
) -> None:
    key, image = shared_image(service)
    [a] = new_account_ids(1)
    await run_job(service, image_id=image.image_id, account_ids=[a], kms_access="grant")
    kms = seed.kms_client(service.double.url, REGION)
    [grant] = grants_by_account(service.double, key.key_id)[a]
    kms.revoke_grant(KeyId=key.key_id, GrantId=grant["GrantId"])

    found = await reconcile_targets(service, (await reconcile(service, image.image_id))["id"])
    assert found[a]["drift"] == {"missing": ["kms_access"], "unrecorded": False}

    repaired = await reconcile(service, image.image_id, repair=True)

    assert repaired["status"] == "succeeded", repaired
    [new_grant] = grants_by_account(service.double, key.key_id)[a]
    assert new_grant["GrantId"] != grant["GrantId"]
    shares = (await service.client.get("/v1/shares", params={"principal": a})).json()
    [row] = shares["items"]
    assert new_grant["GrantId"] in row["key_access"][0]["grant_ids"]
    again = await reconcile_targets(service, (await reconcile(service, image.image_id))["id"])
    assert again[a]["drift"] is None


async def test_reconcile_of_named_accounts_looks_only_at_them(service: Service) -> None:
    _, image = shared_image(service)
    a, b, stranger = new_account_ids(3)
    await run_job(service, image_id=image.image_id, account_ids=[a, b])
    set_launch_permission(service, image.image_id, "Remove", b)

    job = await reconcile(service, image.image_id, account_ids=[a, stranger])

    targets = await reconcile_targets(service, job["id"])
    assert set(targets) == {a, stranger}
    assert targets[a]["drift"] is None
    assert targets[stranger]["drift"] is None  # neither the ledger nor AWS knows it
    assert job["progress"]["total"] == 2


async def test_reconcile_of_an_image_nobody_shares_succeeds_with_no_targets(
    service: Service,
) -> None:
    _, image = shared_image(service)

    job = await reconcile(service, image.image_id)

    assert job["status"] == "succeeded", job
    assert job["progress"]["total"] == 0
