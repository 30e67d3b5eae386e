"""Revoke jobs, the share ledger, organizations, cancel and retry — end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.conftest import REGION, Service, make_settings, new_account_ids, serve
from tests.e2e.aws_state import (
    grants_by_account,
    key_policy,
    launch_permission_accounts,
    policy_accounts,
    snapshot_accounts,
)

ORG_ARN = "arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5"
OU_ARN = "arn:aws:organizations::111111111111:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56"


async def run_job(service: Service, **body: Any) -> dict[str, Any]:
    answer = await service.post_job(**body)
    assert answer.status_code == 202, answer.text
    return await service.wait_for(answer.json()["id"])


async def shares_of(service: Service, *image_ids: str) -> set[tuple[str, str]]:
    found = set()
    for image_id in image_ids:
        page = (await service.client.get("/v1/shares", params={"image_id": image_id})).json()
        found |= {(s["image_id"], s["principal"]) for s in page["items"]}
    return found


def launch_permission_arns(double: AwsDouble, image_id: str) -> set[str]:
    ec2 = seed.ec2_client(double.url, REGION)
    answer = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
    arns = set()
    for permission in answer.get("LaunchPermissions", []):
        arns |= {v for k, v in permission.items() if k != "UserId"}
    return arns


def org_statement_values(policy: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    for statement in policy["Statement"]:
        if statement.get("Sid", "").startswith("AmiShareOrganization"):
            for condition in statement["Condition"].values():
                for key, value in condition.items():
                    if key.startswith("aws:PrincipalOrg"):
                        values |= set(value if isinstance(value, list) else [value])
    return values


@pytest.mark.parametrize("kms_access", ["key_policy", "grant"])
async def test_revoke_keeps_key_access_still_needed_by_another_share(
    service: Service, kms_access: str
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    ami_1 = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
    ami_2 = seed.create_encrypted_image(double.url, key.key_id)
    a, c = new_account_ids(2)

    shared = [
        await run_job(service, image_id=ami_1.image_id, account_ids=[a, c], kms_access=kms_access),
        await run_job(service, image_id=ami_2.image_id, account_ids=[a], kms_access=kms_access),
    ]
    assert [j["status"] for j in shared] == ["succeeded", "succeeded"]
    grants_before = grants_by_account(double, key.key_id)

    revoked = await run_job(
        service, action="revoke", image_id=ami_1.image_id, account_ids=[a, c], kms_access=kms_access
    )

    assert revoked["status"] == "succeeded", revoked
    assert launch_permission_accounts(double, ami_1.image_id) == set()
    assert launch_permission_accounts(double, ami_2.image_id) == {a}
    for snapshot_id in ami_1.snapshot_ids:
        assert snapshot_accounts(double, snapshot_id) == set()
    if kms_access == "key_policy":
        assert policy_accounts(key_policy(double, key.key_id)) == {a}
    else:
        grants = grants_by_account(double, key.key_id)
        assert c not in grants
        assert [g["GrantId"] for g in grants[a]] == [g["GrantId"] for g in grants_before[a]]
    assert await shares_of(service, ami_1.image_id, ami_2.image_id) == {(ami_2.image_id, a)}


async def test_revoking_what_was_never_shared_is_a_noop_that_says_so(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    job = await run_job(
        service, action="revoke", image_id=image.image_id, account_ids=new_account_ids(1)
    )
    assert job["status"] == "succeeded"
    [target] = await service.targets(job["id"])
    assert "nothing to revoke" in target["note"]


async def test_organization_and_ou_share_then_revoke(service: Service) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    targets = {"organization_arns": [ORG_ARN], "organizational_unit_arns": [OU_ARN]}

    shared = await run_job(service, image_id=image.image_id, **targets)

    assert shared["status"] == "succeeded", await service.targets(shared["id"])
    assert launch_permission_arns(double, image.image_id) == {ORG_ARN, OU_ARN}
    assert org_statement_values(key_policy(double, key.key_id)) == {
        "o-a1b2c3d4e5",
        "o-a1b2c3d4e5/*/ou-ab12-cd34ef56/*",
    }
    notes = {t["principal_type"]: t["note"] for t in await service.targets(shared["id"])}
    assert "no organization or OU form" in notes["organization"]

    revoked = await run_job(service, action="revoke", image_id=image.image_id, **targets)

    assert revoked["status"] == "succeeded"
    assert launch_permission_arns(double, image.image_id) == set()
    assert org_statement_values(key_policy(double, key.key_id)) == set()
    assert await shares_of(service, image.image_id) == set()


async def test_malformed_organization_arn_is_422(service: Service) -> None:
    answer = await service.post_job(
        image_id="ami-0123456789abcdef0", organization_arns=["arn:aws:organizations::1:org/x"]
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "organization_arns[0]"


@pytest.fixture
async def slow_service(database_url: str, aws_double: AwsDouble) -> AsyncIterator[Service]:
    """Two destinations at a time and 150 ms per AWS call: a job long enough to cancel."""
    settings = make_settings(database_url, aws_double, target_concurrency=2)
    async for client in serve(settings):
        yield Service(client, settings, aws_double)


async def test_cancel_mid_job_leaves_nothing_unrecorded(slow_service: Service) -> None:
    service, double = slow_service, slow_service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(30)
    double.set_faults(latency_ms=150)
    job_id = (await service.post_job(image_id=image.image_id, account_ids=accounts)).json()["id"]
    async with asyncio.timeout(60):
        while not any(t["step"] == "verify" for t in await service.targets(job_id)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    cancel = await service.client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancel.status_code == 202
    job = await service.wait_for(job_id)

    assert job["status"] == "cancelled"
    targets = await service.targets(job_id)
    assert not [t for t in targets if t["status"] in ("pending", "running")]
    succeeded = {t["principal"] for t in targets if t["status"] == "succeeded"}
    assert {t["status"] for t in targets} <= {"succeeded", "cancelled"}
    assert job["progress"]["cancelled"] > 0
    double.set_faults()
    assert launch_permission_accounts(double, image.image_id) == succeeded
    assert policy_accounts(key_policy(double, key.key_id)) == succeeded
    assert {p for _, p in await shares_of(service, image.image_id)} == succeeded
    again = await service.client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409


async def test_cancel_of_a_queued_job_is_immediate(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    service.double.set_faults(latency_ms=300)
    first = (await service.post_job(image_id=image.image_id, account_ids=new_account_ids(3))).json()
    # The second job on the same image waits for the first: it is still queued.
    second = (
        await service.post_job(image_id=image.image_id, account_ids=new_account_ids(3))
    ).json()
    cancelled = await service.client.post(f"/v1/jobs/{second['id']}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["progress"]["cancelled"] == 3
    await service.wait_for(first["id"])


async def test_retry_runs_only_the_failed_target_again(service: Service) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(4)
    broken = accounts[2]
    double.set_faults(deny_assume_role_into=[broken])

    first = await run_job(service, image_id=image.image_id, account_ids=accounts)

    assert first["status"] == "partially_succeeded"
    failed = [t for t in await service.targets(first["id"]) if t["status"] == "failed"]
    assert [(t["principal"], t["error"]["code"]) for t in failed] == [
        (broken, "DestinationRoleUnavailable")
    ]
    double.set_faults()  # the destination role is fixed
    retried = await service.client.post(f"/v1/jobs/{first['id']}/retry")
    assert retried.status_code == 202
    job = await service.wait_for(first["id"])

    assert job["status"] == "succeeded"
    attempts = {t["principal"]: t["attempts"] for t in await service.targets(job["id"])}
    assert attempts == {a: (2 if a == broken else 1) for a in accounts}
    assert (await service.client.post(f"/v1/jobs/{job['id']}/retry")).status_code == 409


@pytest.mark.parametrize("order", [("share", "revoke"), ("revoke", "share")])
async def test_share_and_revoke_posted_together_end_in_acceptance_order(
    service: Service, order: tuple[str, str]
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(3)
    if order[0] == "revoke":  # something to revoke, shared before both jobs
        await run_job(service, image_id=image.image_id, account_ids=accounts)

    answers = []
    for action in order:
        answers.append(
            await service.post_job(action=action, image_id=image.image_id, account_ids=accounts)
        )
    jobs = [await service.wait_for(a.json()["id"]) for a in answers]

    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    last = order[-1]
    expected = set(accounts) if last == "share" else set()
    assert launch_permission_accounts(double, image.image_id) == expected
    assert policy_accounts(key_policy(double, key.key_id)) == expected
    assert {p for _, p in await shares_of(service, image.image_id)} == expected
