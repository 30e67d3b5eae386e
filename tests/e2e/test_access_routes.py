"""A revoke takes back everything a share gave, and a share that cannot finish a target takes
back what it gave it: every way in to a key is recorded, and only our own statements are ours."""

from __future__ import annotations

from typing import Any

from app.domain.key_policy import KEY_POLICY_MAX_BYTES, policy_size, render_policy
from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.conftest import REGION, Service, make_settings, new_account_ids, serve
from tests.e2e.aws_state import (
    grants_by_account,
    key_policy,
    launch_permission_accounts,
    mutating_calls,
    policy_accounts,
    snapshot_accounts,
)
from tests.e2e.test_revoke import run_job, shares_of


def ledger_rows(page: dict[str, Any], principal: str) -> list[dict[str, Any]]:
    return [row for row in page["items"] if row["principal"] == principal]


async def shares_page(service: Service, image_id: str) -> dict[str, Any]:
    answer = await service.client.get("/v1/shares", params={"image_id": image_id})
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def put_policy(service: Service, key_id: str, policy: dict[str, Any]) -> None:
    kms = seed.kms_client(service.double.url, REGION)
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=render_policy(policy))


def foreign_statements() -> list[dict[str, Any]]:
    """Statements a person wrote whose Sids merely start like ours: never ours to touch."""
    return [
        {
            "Sid": "AmiShareBlockContractor",
            "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "AmiShareBuildRole",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/image-builder"},
            "Action": ["kms:Encrypt", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}},
        },
    ]


async def test_grant_share_then_key_policy_share_then_revoke_leaves_no_way_in(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    a, b = new_account_ids(2)

    by_grant = await run_job(service, image_id=image.image_id, account_ids=[a], kms_access="grant")
    by_policy = await run_job(service, image_id=image.image_id, account_ids=[a, b])
    assert [by_grant["status"], by_policy["status"]] == ["succeeded", "succeeded"]
    assert a in grants_by_account(service.double, key.key_id)
    row = ledger_rows(await shares_page(service, image.image_id), a)[0]
    assert row["launch_permission"] is True
    [access] = row["key_access"]
    assert access["kms_key_id"] == key.key_arn and access["key_policy"] is True
    assert len(access["grant_ids"]) == 1  # recorded by the first share, kept by the second

    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[a])

    assert revoked["status"] == "succeeded", revoked
    assert a not in grants_by_account(service.double, key.key_id)
    assert policy_accounts(key_policy(service.double, key.key_id)) == {b}
    assert ledger_rows(await shares_page(service, image.image_id), a) == []
    assert launch_permission_accounts(service.double, image.image_id) == {b}
    assert snapshot_accounts(service.double, image.snapshot_ids[0]) == {b}


async def test_revoke_with_kms_access_none_keeps_the_row_until_key_access_is_taken_back(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    [a] = new_account_ids(1)
    await run_job(service, image_id=image.image_id, account_ids=[a])

    kept = await run_job(
        service, action="revoke", image_id=image.image_id, account_ids=[a], kms_access="none"
    )

    assert kept["status"] == "succeeded", kept
    assert launch_permission_accounts(service.double, image.image_id) == set()
    assert policy_accounts(key_policy(service.double, key.key_id)) == {a}
    [row] = ledger_rows(await shares_page(service, image.image_id), a)
    assert row["launch_permission"] is False
    assert row["snapshot_ids"] == []
    assert row["key_access"][0]["key_policy"] is True
    [target] = await service.targets(kept["id"])
    assert "left in place" in target["note"]

    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[a])

    assert revoked["status"] == "succeeded"
    assert policy_accounts(key_policy(service.double, key.key_id)) == set()
    assert await shares_of(service, image.image_id) == set()


async def test_statements_with_our_prefix_but_not_our_sids_are_never_touched(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    policy = seed.default_key_policy()
    policy["Statement"] = policy["Statement"][:1] + foreign_statements() + policy["Statement"][1:]
    put_policy(service, key.key_id, policy)
    theirs = [s for s in policy["Statement"]]
    [a] = new_account_ids(1)

    shared = await run_job(service, image_id=image.image_id, account_ids=[a])
    after_share = key_policy(service.double, key.key_id)["Statement"]
    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[a])
    after_revoke = key_policy(service.double, key.key_id)["Statement"]

    assert [shared["status"], revoked["status"]] == ["succeeded", "succeeded"], (
        shared["error"],
        revoked["error"],
    )
    # Every statement of theirs in its place, as it was; ours added after them, then gone.
    assert after_share[: len(theirs)] == theirs
    assert [s["Sid"] for s in after_share[len(theirs) :]] == [
        "AmiShareAccounts",
        "AmiShareAccountsCreateGrant",
    ]
    assert after_revoke == theirs


async def test_a_statement_with_our_sid_in_another_shape_stops_the_job_before_any_change(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    policy = seed.default_key_policy()
    policy["Statement"].append(
        {
            "Sid": "AmiShareAccounts",
            "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
            "Resource": "*",
        }
    )
    put_policy(service, key.key_id, policy)
    since = len(service.double.requests())

    job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(2))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "KeyPolicyConflict"
    assert "AmiShareAccounts" in job["error"]["message"]
    assert mutating_calls(service.double, since) == []
    assert key_policy(service.double, key.key_id) == policy


async def test_a_target_failing_verification_has_what_it_was_given_taken_back(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id, snapshot_count=2)
    good, bad = new_account_ids(2)
    service.double.set_faults(deny_assume_role_into=(bad,))

    job = await run_job(service, image_id=image.image_id, account_ids=[good, bad])

    assert job["status"] == "partially_succeeded", job
    targets = {t["principal"]: t for t in await service.targets(job["id"])}
    assert targets[bad]["error"]["code"] == "DestinationRoleUnavailable"
    assert "taken back" in targets[bad]["error"]["message"]
    assert launch_permission_accounts(service.double, image.image_id) == {good}
    for snapshot_id in image.snapshot_ids:
        assert snapshot_accounts(service.double, snapshot_id) == {good}
    assert policy_accounts(key_policy(service.double, key.key_id)) == {good}
    assert await shares_of(service, image.image_id) == {(image.image_id, good)}


async def test_a_job_failing_on_its_second_key_takes_back_the_first(service: Service) -> None:
    first, second = sorted(
        (seed.create_customer_key(service.double.url) for _ in range(2)), key=lambda k: k.key_arn
    )
    image = seed.create_image_under_keys(service.double.url, [first.key_id, second.key_id])
    # The second key's policy is almost 32 KB: two more accounts do not fit.
    padded = seed.default_key_policy()
    tags: list[str] = []
    padded["Statement"].append(
        {
            "Sid": "Padding",
            "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalTag/x": tags}},
        }
    )
    while policy_size(padded) < KEY_POLICY_MAX_BYTES - 200:
        tags.append(f"tag-{len(tags):05d}")
    put_policy(service, second.key_id, padded)
    before = key_policy(service.double, first.key_id)

    job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(2))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "KeyPolicyTooLarge"
    assert key_policy(service.double, first.key_id) == before
    assert launch_permission_accounts(service.double, image.image_id) == set()
    assert await shares_of(service, image.image_id) == set()
    events = (await service.client.get(f"/v1/jobs/{job['id']}/events")).json()["items"]
    edits = [e["detail"] for e in events if e["api"] == "kms:PutKeyPolicy"]
    assert [sorted(d) for d in edits] == [["added"], ["removed"]]


async def test_revoke_finds_what_aws_shows_by_name_though_the_ledger_has_nothing(
    service: Service,
) -> None:
    """As after a crash between a change and its record: a grant by our name, a launch
    permission and a snapshot permission the ledger never heard of."""
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    [a] = new_account_ids(1)
    ec2 = seed.ec2_client(double.url, REGION)
    ec2.modify_image_attribute(ImageId=image.image_id, LaunchPermission={"Add": [{"UserId": a}]})
    ec2.modify_snapshot_attribute(
        SnapshotId=image.snapshot_ids[0],
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[a],
    )
    seed.kms_client(double.url, REGION).create_grant(
        KeyId=key.key_arn,
        GranteePrincipal=f"arn:aws:iam::{a}:root",
        Operations=["Decrypt"],
        Name=f"amishare-{a}",
    )

    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[a])

    assert revoked["status"] == "succeeded"
    [target] = await service.targets(revoked["id"])
    assert not (target["note"] or "").startswith("Was not shared")
    assert launch_permission_accounts(double, image.image_id) == set()
    assert snapshot_accounts(double, image.snapshot_ids[0]) == set()
    assert a not in grants_by_account(double, key.key_id)


async def test_grant_ids_are_in_the_audit_trail(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    accounts = new_account_ids(2)

    job = await run_job(service, image_id=image.image_id, account_ids=accounts, kms_access="grant")

    events = (await service.client.get(f"/v1/jobs/{job['id']}/events")).json()["items"]
    created = {e["principals"][0]: e["detail"] for e in events if e["api"] == "kms:CreateGrant"}
    grants = grants_by_account(service.double, key.key_id)
    for account in accounts:
        assert created[account]["grant_id"] == grants[account][0]["GrantId"]
        assert created[account]["name"] == f"amishare-{account}"


async def test_role_sessions_name_the_job_and_the_token(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    since = len(service.double.requests())

    job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(1))

    assumed = [r.params for r in service.double.requests(since) if r.action == "AssumeRole"]
    assert assumed, "the destination role is assumed to verify"
    for params in assumed:
        assert params is not None
        assert params["RoleSessionName"] == f"amishare-{job['id']}"
        assert params["SourceIdentity"] == "writer"


async def test_a_target_refused_at_launch_permission_loses_its_key_and_snapshot_access(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    good, refused = new_account_ids(2)
    service.double.set_faults(refuse_accounts=(refused,), actions=("ModifyImageAttribute",))

    job = await run_job(service, image_id=image.image_id, account_ids=[good, refused])

    assert job["status"] == "partially_succeeded", job
    targets = {t["principal"]: t for t in await service.targets(job["id"])}
    assert targets[refused]["step"] == "launch_permission"
    assert targets[refused]["error"]["code"] == "InvalidAccountId"
    assert policy_accounts(key_policy(service.double, key.key_id)) == {good}
    assert snapshot_accounts(service.double, image.snapshot_ids[0]) == {good}
    assert await shares_of(service, image.image_id) == {(image.image_id, good)}


async def test_revoke_takes_back_the_grants_a_destination_made_from_ours(
    service: Service,
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    [a] = new_account_ids(1)
    await run_job(service, image_id=image.image_id, account_ids=[a], kms_access="grant")
    as_destination = seed.kms_client(double.url, REGION, seed.assume_account(double.url, a))
    derived = as_destination.create_grant(
        KeyId=key.key_arn,
        GranteePrincipal=f"arn:aws:iam::{a}:role/autoscaling",
        Operations=["Decrypt", "DescribeKey"],
    )["GrantId"]
    grant_ids = {
        g["GrantId"] for g in seed.kms_client(double.url).list_grants(KeyId=key.key_id)["Grants"]
    }
    assert derived in grant_ids

    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[a])

    assert revoked["status"] == "succeeded"
    assert seed.kms_client(double.url).list_grants(KeyId=key.key_id)["Grants"] == []


async def test_kms_lockout_refusal_fails_the_job_once_instead_of_blaming_each_account(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    # Only the key administrator role may manage the key: a policy the service writes would
    # lock the service's own identity out, so KMS refuses it as a whole.
    policy = seed.default_key_policy()
    policy["Statement"] = policy["Statement"][1:]
    seed.kms_client(service.double.url).put_key_policy(
        KeyId=key.key_id,
        PolicyName="default",
        Policy=render_policy(policy),
        BypassPolicyLockoutSafetyCheck=True,
    )
    since = len(service.double.requests())

    job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(8))

    assert job["status"] == "failed"
    assert job["error"]["code"] == "KeyPolicyRejected"
    puts = [r for r in service.double.requests(since) if r.action == "PutKeyPolicy"]
    assert len(puts) == 1
    targets = await service.targets(job["id"])
    assert {t["error"]["code"] for t in targets} == {"KeyPolicyRejected"}


async def test_expired_role_credentials_are_assumed_again_and_the_job_goes_on(
    database_url: str, aws_double: AwsDouble
) -> None:
    settings = make_settings(database_url, aws_double, source_role_name="amishare-source")
    key = seed.create_customer_key(aws_double.url)
    image = seed.create_encrypted_image(aws_double.url, key.key_id, snapshot_count=2)
    aws_double.set_faults(credential_lifetime_seconds=0.3, latency_ms=100)
    since = len(aws_double.requests())
    async for client in serve(settings):
        service = Service(client, settings, aws_double)
        job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(2))

        assert job["status"] == "succeeded", job
    recorded = aws_double.requests(since)
    assert any(r.fault == "expired" for r in recorded)
    into_source = [
        r
        for r in recorded
        if r.action == "AssumeRole"
        and ":123456789012:role/" in str((r.params or {}).get("RoleArn"))
    ]
    assert len(into_source) >= 2, "the source role was assumed again"


async def test_what_an_undo_cannot_take_back_stays_recorded_for_a_revoke(
    service: Service,
) -> None:
    """The launch-permission step throttled past the retry budget (reading what the image
    has, then changing it): the job fails, and taking back what it gave is throttled too. What
    remains is in the ledger; a revoke takes it all back."""
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(2)
    double.set_faults(
        throttle_rate=1.0,
        throttle_all_calls=True,
        actions=("DescribeImageAttribute", "ModifyImageAttribute"),
    )

    job = await run_job(service, image_id=image.image_id, account_ids=accounts)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "AwsError"
    page = await shares_page(service, image.image_id)
    assert {row["principal"] for row in page["items"]} == set(accounts)
    for row in page["items"]:
        assert row["kms_key_ids"] == [key.key_arn]
        assert row["snapshot_ids"] == list(image.snapshot_ids)
        assert row["key_access"][0]["key_policy"] is True
    assert policy_accounts(key_policy(double, key.key_id)) == set(accounts)
    double.set_faults()

    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=accounts)

    assert revoked["status"] == "succeeded"
    assert policy_accounts(key_policy(double, key.key_id)) == set()
    assert snapshot_accounts(double, image.snapshot_ids[0]) == set()
    assert await shares_of(service, image.image_id) == set()
