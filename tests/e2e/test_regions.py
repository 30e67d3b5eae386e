"""Many Regions: one job shares an image in its own Region and in each of `regions`, where the
source copies it once (re-encrypted with that Region's key) and shares the copy."""

from __future__ import annotations

import json
from typing import Any

from app.sandbox import seed
from tests.conftest import REGION, Service, new_account_ids
from tests.e2e.test_revoke import run_job

OTHER = "eu-west-1"
TAGS = {"team": "platform"}


def ec2(service: Service, region: str) -> Any:
    return seed.ec2_client(service.double.url, region)


def launch_accounts(service: Service, image_id: str, region: str) -> set[str]:
    answer = ec2(service, region).describe_image_attribute(
        ImageId=image_id, Attribute="launchPermission"
    )
    return {p["UserId"] for p in answer.get("LaunchPermissions", []) if "UserId" in p}


def snapshot_accounts(service: Service, snapshot_id: str, region: str) -> set[str]:
    answer = ec2(service, region).describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return {p["UserId"] for p in answer.get("CreateVolumePermissions", []) if "UserId" in p}


def policy_accounts(service: Service, key_arn: str, region: str) -> set[str]:
    kms = seed.kms_client(service.double.url, region)
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    found: set[str] = set()
    for statement in policy["Statement"]:
        if statement.get("Sid") == "AmiShareAccounts":
            principals = statement["Principal"]["AWS"]
            for arn in [principals] if isinstance(principals, str) else principals:
                found.add(arn.split(":")[4])
    return found


def copy_calls(service: Service, since: int) -> list[Any]:
    return [r for r in service.double.requests(since) if r.action == "CopyImage" and r.status < 400]


async def shares(service: Service, **params: str) -> list[dict[str, Any]]:
    answer = await service.client.get("/v1/shares", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def image_in_two_regions(service: Service) -> tuple[seed.SeededImage, seed.SeededKey]:
    """An image in the job's Region, tagged, and a customer-managed key in the other one."""
    home_key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, home_key.key_id, snapshot_count=2)
    seed.tag_image(service.double.url, image.image_id, TAGS)
    return image, seed.create_customer_key(service.double.url, region=OTHER)


async def test_a_share_in_two_regions_shares_a_copy_under_the_other_regions_key(
    service: Service,
) -> None:
    image, other_key = image_in_two_regions(service)
    accounts = new_account_ids(2)

    job = await run_job(
        service,
        image_id=image.image_id,
        account_ids=accounts,
        regions=[OTHER],
        region_kms_key_ids={OTHER: other_key.key_arn},
    )

    assert job["status"] == "succeeded", job
    assert job["progress"]["total"] == job["progress"]["succeeded"] == 4
    targets = await service.targets(job["id"])
    by_region = {t["region"]: t["image_id"] for t in targets}
    assert by_region[REGION] == image.image_id
    copy_id = by_region[OTHER]
    assert copy_id and copy_id != image.image_id
    [copy] = ec2(service, OTHER).describe_images(ImageIds=[copy_id])["Images"]
    assert copy["OwnerId"] == seed.SOURCE_ACCOUNT_ID
    assert {t["Key"]: t["Value"] for t in copy["Tags"]}.items() >= TAGS.items()
    snapshots = [m["Ebs"]["SnapshotId"] for m in copy["BlockDeviceMappings"] if "Ebs" in m]
    described = ec2(service, OTHER).describe_snapshots(SnapshotIds=snapshots)["Snapshots"]
    assert {s["KmsKeyId"] for s in described} == {other_key.key_arn}
    assert launch_accounts(service, copy_id, OTHER) == set(accounts)
    for snapshot_id in snapshots:
        assert snapshot_accounts(service, snapshot_id, OTHER) == set(accounts)
    assert policy_accounts(service, other_key.key_arn, OTHER) == set(accounts)
    assert launch_accounts(service, image.image_id, REGION) == set(accounts)
    listed = await shares(service, image_id=image.image_id)
    assert {(s["region"], s["image_id"]) for s in listed} == {
        (REGION, image.image_id),
        (OTHER, copy_id),
    }
    assert {s["principal"] for s in await shares(service, region=OTHER, image_id=copy_id)} == set(
        accounts
    )

    since = len(service.double.requests())
    again = await run_job(
        service,
        image_id=image.image_id,
        account_ids=new_account_ids(1),
        regions=[OTHER],
        region_kms_key_ids={OTHER: other_key.key_arn},
    )

    assert again["status"] == "succeeded", again
    assert copy_calls(service, since) == []  # the copy in eu-west-1 is reused


async def test_an_unusable_key_fails_only_that_regions_targets(service: Service) -> None:
    image, _other_key = image_in_two_regions(service)
    accounts = new_account_ids(2)

    job = await run_job(
        service,
        image_id=image.image_id,
        account_ids=accounts,
        regions=[OTHER],
        region_kms_key_ids={OTHER: "alias/no-such-key"},
    )

    assert job["status"] == "partially_succeeded", job
    assert job["error"] is None
    for target in await service.targets(job["id"]):
        if target["region"] == REGION:
            assert target["status"] == "succeeded"
        else:
            assert target["status"] == "failed"
            assert target["error"]["code"] == "RegionKeyUnavailable"
    assert launch_accounts(service, image.image_id, REGION) == set(accounts)


async def test_a_revoke_in_both_regions_keeps_key_access_another_share_needs(
    service: Service,
) -> None:
    image, other_key = image_in_two_regions(service)
    # An image of eu-west-1's own, under the same key, shared with one of the accounts.
    native = seed.create_encrypted_image(service.double.url, other_key.key_id, region=OTHER)
    keeper, leaver = new_account_ids(2)
    first = await run_job(
        service,
        image_id=image.image_id,
        account_ids=[keeper, leaver],
        regions=[OTHER],
        region_kms_key_ids={OTHER: other_key.key_arn},
    )
    await run_job(service, image_id=native.image_id, region=OTHER, account_ids=[keeper])
    copy_id = next(
        t["image_id"] for t in await service.targets(first["id"]) if t["region"] == OTHER
    )

    revoked = await run_job(
        service,
        action="revoke",
        image_id=image.image_id,
        account_ids=[keeper, leaver],
        regions=[OTHER],
    )

    assert revoked["status"] == "succeeded", revoked
    assert launch_accounts(service, image.image_id, REGION) == set()
    assert launch_accounts(service, copy_id, OTHER) == set()
    assert policy_accounts(service, other_key.key_arn, OTHER) == {keeper}  # the native needs it
    targets = await service.targets(revoked["id"])
    kept = next(t for t in targets if t["principal"] == keeper and t["region"] == OTHER)
    assert native.image_id in (kept["note"] or "")
    assert {s["image_id"] for s in await shares(service, region=OTHER)} >= {native.image_id}
    assert not [s for s in await shares(service, image_id=image.image_id)]
