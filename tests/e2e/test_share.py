"""Share jobs end to end: HTTP in, aioboto3 out to the AWS double, state checked on the double."""

from __future__ import annotations

import asyncio

from app.aws.boto_gateway import GRANT_OPERATIONS
from app.sandbox import seed
from tests.conftest import SOURCE_ACCOUNT, Service, new_account_ids
from tests.e2e.aws_state import (
    destination_sees_image,
    grants_by_account,
    key_policy,
    launch_permission_accounts,
    mutating_calls,
    other_statements,
    policy_accounts,
    snapshot_accounts,
)


def encrypted_image(
    service: Service, snapshots: int = 2
) -> tuple[seed.SeededKey, seed.SeededImage]:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id, snapshot_count=snapshots)
    return key, image


async def share(service: Service, image_id: str, accounts: list[str], **body: object) -> dict:
    answer = await service.post_job(image_id=image_id, account_ids=accounts, **body)
    assert answer.status_code == 202, answer.text
    return await service.wait_for(answer.json()["id"])


async def test_share_to_25_accounts_lands_every_grant_and_keeps_other_statements(
    service: Service,
) -> None:
    key, image = encrypted_image(service)
    policy_before = key_policy(service.double, key.key_id)
    accounts = new_account_ids(25)

    job = await share(service, image.image_id, accounts)

    assert job["status"] == "succeeded", job
    assert job["progress"] == {
        "total": 25,
        "pending": 0,
        "running": 0,
        "succeeded": 25,
        "failed": 0,
        "cancelled": 0,
    }
    assert launch_permission_accounts(service.double, image.image_id) == set(accounts)
    assert len(image.snapshot_ids) == 2
    for snapshot_id in image.snapshot_ids:
        assert snapshot_accounts(service.double, snapshot_id) == set(accounts)
    policy_after = key_policy(service.double, key.key_id)
    assert policy_accounts(policy_after) == set(accounts)
    assert other_statements(policy_after) == other_statements(policy_before)
    for account in accounts[:3] + accounts[-2:]:
        assert destination_sees_image(service.double, account, image.image_id)
    targets = await service.targets(job["id"])
    assert {t["status"] for t in targets} == {"succeeded"}
    assert {t["step"] for t in targets} == {"ledger"}
    assert all(t["attempts"] == 1 and t["error"] is None for t in targets)


async def test_source_calls_do_not_grow_with_destinations(service: Service) -> None:
    _key, image = encrypted_image(service)
    since = len(service.double.requests())
    await share(service, image.image_id, new_account_ids(40), verify=False)
    calls = mutating_calls(service.double, since)
    # One key policy write, one permission call per snapshot, one launch permission call.
    assert sorted(calls) == sorted(
        [
            "kms:PutKeyPolicy",
            "ec2:ModifySnapshotAttribute",
            "ec2:ModifySnapshotAttribute",
            "ec2:ModifyImageAttribute",
        ]
    )


async def test_grant_mode_creates_one_named_grant_per_account(service: Service) -> None:
    key, image = encrypted_image(service)
    policy_before = key_policy(service.double, key.key_id)
    accounts = new_account_ids(5)

    job = await share(service, image.image_id, accounts, kms_access="grant")

    assert job["status"] == "succeeded", job
    grants = grants_by_account(service.double, key.key_id)
    assert set(grants) == set(accounts)
    for account in accounts:
        assert len(grants[account]) == 1
        grant = grants[account][0]
        assert grant["GranteePrincipal"] == f"arn:aws:iam::{account}:root"
        assert grant["Name"] == f"amishare-{account}"
        assert sorted(grant["Operations"]) == sorted(GRANT_OPERATIONS)
    assert key_policy(service.double, key.key_id) == policy_before
    assert launch_permission_accounts(service.double, image.image_id) == set(accounts)


async def test_aws_managed_key_fails_the_job_and_changes_nothing(service: Service) -> None:
    image = seed.create_aws_managed_key_image(service.double.url, snapshot_count=1)
    since = len(service.double.requests())

    job = await share(service, image.image_id, new_account_ids(3))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "AwsManagedKey"
    assert "customer managed" in job["error"]["message"]
    assert mutating_calls(service.double, since) == []
    assert launch_permission_accounts(service.double, image.image_id) == set()
    targets = await service.targets(job["id"])
    assert {t["error"]["code"] for t in targets} == {"AwsManagedKey"}


async def test_unknown_image_fails_with_image_not_found(service: Service) -> None:
    job = await share(service, "ami-0000000000000dead", new_account_ids(2))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "ImageNotFound"


async def test_instance_store_image_is_refused(service: Service) -> None:
    image = seed.create_instance_store_image(service.double.url)
    job = await share(service, image.image_id, new_account_ids(1))
    assert job["error"]["code"] == "InstanceStoreNotSupported"


async def test_image_of_another_account_is_not_owned(service: Service) -> None:
    other = new_account_ids(1)[0]
    credentials = seed.assume_account(service.double.url, other)
    key = seed.create_customer_key(service.double.url, credentials=credentials, account_id=other)
    image = seed.create_encrypted_image(service.double.url, key.key_id, credentials=credentials)
    seed.ec2_client(service.double.url, credentials=credentials).modify_image_attribute(
        ImageId=image.image_id, LaunchPermission={"Add": [{"UserId": SOURCE_ACCOUNT}]}
    )
    job = await share(service, image.image_id, new_account_ids(1))
    assert job["error"]["code"] == "ImageNotOwned"


async def test_unencrypted_image_is_shared_without_key_changes(service: Service) -> None:
    image = seed.create_unencrypted_image(service.double.url)
    since = len(service.double.requests())
    job = await share(service, image.image_id, new_account_ids(3))
    assert job["status"] == "succeeded"
    assert not [c for c in mutating_calls(service.double, since) if c.startswith("kms:")]


async def test_one_unknown_account_fails_only_that_target(service: Service) -> None:
    key, image = encrypted_image(service)
    accounts = new_account_ids(12)
    bad = accounts[7]
    service.double.set_unknown_accounts([bad])

    job = await share(service, image.image_id, accounts)

    assert job["status"] == "partially_succeeded", job
    assert job["progress"]["succeeded"] == 11 and job["progress"]["failed"] == 1
    failed = [t for t in await service.targets(job["id"]) if t["status"] == "failed"]
    assert [t["principal"] for t in failed] == [bad]
    assert failed[0]["error"]["code"] == "InvalidAccountId"
    assert failed[0]["step"] == "kms_access"
    good = set(accounts) - {bad}
    assert launch_permission_accounts(service.double, image.image_id) == good
    assert policy_accounts(key_policy(service.double, key.key_id)) == good


async def test_throttling_on_a_fifth_of_mutating_calls_is_retried(service: Service) -> None:
    key, image = encrypted_image(service)
    accounts = new_account_ids(10)
    since = len(service.double.requests())
    service.double.set_faults(throttle_rate=0.2, seed=7)

    job = await share(service, image.image_id, accounts, kms_access="grant")

    assert job["status"] == "succeeded", await service.targets(job["id"])
    throttled = [r for r in service.double.requests(since) if r.fault]
    assert throttled, "the double injected no throttling"
    grants = grants_by_account(service.double, key.key_id)
    assert {a: len(g) for a, g in grants.items()} == dict.fromkeys(accounts, 1)  # retried: one
    assert launch_permission_accounts(service.double, image.image_id) == set(accounts)


async def test_two_jobs_on_images_sharing_one_key_lose_no_policy_edit(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    first = seed.create_encrypted_image(service.double.url, key.key_id)
    second = seed.create_encrypted_image(service.double.url, key.key_id)
    accounts_a, accounts_b = new_account_ids(6), new_account_ids(6)
    service.double.set_faults(latency_ms=20)

    answers = await asyncio.gather(
        service.post_job(image_id=first.image_id, account_ids=accounts_a),
        service.post_job(image_id=second.image_id, account_ids=accounts_b),
    )
    jobs = [await service.wait_for(a.json()["id"]) for a in answers]

    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert policy_accounts(key_policy(service.double, key.key_id)) == set(accounts_a + accounts_b)
