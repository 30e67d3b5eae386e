"""Copies: each destination copies the shared image into itself under its own key, and an image
under the AWS-managed key is shared as a copy re-encrypted with a customer-managed one."""

from __future__ import annotations

from typing import Any

from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.conftest import REGION, Service, new_account_ids
from tests.e2e.aws_state import launch_permission_accounts
from tests.e2e.test_revoke import run_job, shares_of

ALIAS = "alias/amishare-copies"
TAGS = {"team": "platform", "build": "1234"}


def as_account(double: AwsDouble, account_id: str) -> seed.Credentials:
    return seed.assume_account(double.url, account_id)


def owned_images(double: AwsDouble, account_id: str) -> list[dict[str, Any]]:
    ec2 = seed.ec2_client(double.url, REGION, as_account(double, account_id))
    images: list[dict[str, Any]] = ec2.describe_images(Owners=["self"])["Images"]
    return images


def snapshot_keys(double: AwsDouble, account_id: str, image: dict[str, Any]) -> set[str]:
    ec2 = seed.ec2_client(double.url, REGION, as_account(double, account_id))
    ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    return {s["KmsKeyId"] for s in ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]}


def tagged_image(service: Service) -> seed.SeededImage:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id, snapshot_count=2)
    seed.tag_image(service.double.url, image.image_id, TAGS)
    return image


async def test_each_destination_owns_a_copy_under_its_own_key_with_the_source_tags(
    service: Service,
) -> None:
    double = service.double
    image = tagged_image(service)
    # The service's own tags describe the source's copies: a destination's copy is not one.
    seed.tag_image(double.url, image.image_id, {"amishare:source-image": "ami-0123456789abcdef0"})
    accounts = new_account_ids(3)
    keys = {a: seed.create_destination_key(double.url, a, ALIAS).key_arn for a in accounts}

    job = await run_job(
        service, image_id=image.image_id, account_ids=accounts, copy={"kms_key_id": ALIAS}
    )

    assert job["status"] == "succeeded", job
    targets = {t["principal"]: t for t in await service.targets(job["id"])}
    shares = {
        s["principal"]: s
        for s in (
            await service.client.get("/v1/shares", params={"image_id": image.image_id})
        ).json()["items"]
    }
    for account in accounts:
        [copy] = owned_images(double, account)
        assert copy["State"] == "available"
        assert copy["ImageId"] == targets[account]["copied_image_id"]
        assert copy["ImageId"] == shares[account]["copied_image_id"]
        assert snapshot_keys(double, account, copy) == {keys[account]}
        assert {t["Key"]: t["Value"] for t in copy.get("Tags", [])} == TAGS
    events = (await service.client.get(f"/v1/jobs/{job['id']}/events")).json()["items"]
    copied = {e["resource"] for e in events if e["api"] == "ec2:CopyImage"}
    assert copied == {t["copied_image_id"] for t in targets.values()}

    since = len(double.requests())
    again = await run_job(
        service, image_id=image.image_id, account_ids=accounts, copy={"kms_key_id": ALIAS}
    )

    assert again["status"] == "succeeded", again
    assert [r for r in double.requests(since) if r.action == "CopyImage"] == []
    for account in accounts:
        assert len(owned_images(double, account)) == 1


async def test_a_missing_key_and_a_failed_copy_fail_their_destination_alone(
    service: Service,
) -> None:
    double = service.double
    image = tagged_image(service)
    good, keyless, failing = new_account_ids(3)
    for account in (good, failing):
        seed.create_destination_key(double.url, account, ALIAS)
    double.set_faults(copy_fail_accounts=(failing,))

    job = await run_job(
        service,
        image_id=image.image_id,
        account_ids=[good, keyless, failing],
        copy={"kms_key_id": ALIAS},
    )

    assert job["status"] == "partially_succeeded", job
    targets = {t["principal"]: t for t in await service.targets(job["id"])}
    assert targets[good]["status"] == "succeeded"
    assert targets[keyless]["error"]["code"] == "DestinationKeyUnavailable"
    assert targets[failing]["error"]["code"] == "CopyFailed"
    assert {targets[a]["step"] for a in (keyless, failing)} == {"copy"}
    # The shares themselves stand, recorded: only the copies are missing.
    assert launch_permission_accounts(double, image.image_id) == {good, keyless, failing}
    assert await shares_of(service, image.image_id) == {
        (image.image_id, a) for a in (good, keyless, failing)
    }


async def test_the_concurrent_copy_limit_is_waited_out(service: Service) -> None:
    double = service.double
    image = tagged_image(service)
    [account] = new_account_ids(1)
    seed.share_for_copy(double.url, image, account)
    double.set_faults(copy_seconds=1.5, max_pending_copies=1)
    # The destination already has a copy in progress: the job's copy must wait for it.
    seed.ec2_client(double.url, REGION, as_account(double, account)).copy_image(
        SourceImageId=image.image_id, SourceRegion=REGION, Name="already-copying"
    )

    job = await run_job(service, image_id=image.image_id, account_ids=[account], copy={})

    assert job["status"] == "succeeded", job
    refused = [r for r in double.requests() if r.action == "CopyImage" and r.status >= 400]
    assert refused, "the limit was hit"


async def test_reencrypt_shares_a_source_copy_under_the_customer_managed_key(
    service: Service,
) -> None:
    double = service.double
    original = seed.create_aws_managed_key_image(double.url, snapshot_count=1)
    seed.tag_image(double.url, original.image_id, TAGS)
    cmk = seed.create_customer_key(double.url)
    accounts = new_account_ids(2)

    job = await run_job(
        service,
        image_id=original.image_id,
        account_ids=accounts,
        reencrypt={"kms_key_id": cmk.key_arn},
    )

    assert job["status"] == "succeeded", job
    shared = job["shared_image_id"]
    assert shared and shared != original.image_id
    ec2 = seed.ec2_client(double.url, REGION)
    [copy] = ec2.describe_images(ImageIds=[shared])["Images"]
    assert copy["OwnerId"] == seed.SOURCE_ACCOUNT_ID
    assert {t["Key"]: t["Value"] for t in copy["Tags"]}.items() >= TAGS.items()
    assert snapshot_keys(double, seed.SOURCE_ACCOUNT_ID, copy) == {cmk.key_arn}
    assert launch_permission_accounts(double, shared) == set(accounts)
    assert launch_permission_accounts(double, original.image_id) == set()
    listed = (
        await service.client.get("/v1/shares", params={"image_id": original.image_id})
    ).json()["items"]
    assert {(s["image_id"], s["source_image_id"]) for s in listed} == {(shared, original.image_id)}

    since = len(double.requests())
    again = await run_job(
        service,
        image_id=original.image_id,
        account_ids=new_account_ids(1),
        reencrypt={"kms_key_id": cmk.key_arn},
    )

    assert again["status"] == "succeeded", again
    assert again["shared_image_id"] == shared
    assert [r for r in double.requests(since) if r.action == "CopyImage"] == []

    revoked = await run_job(
        service, action="revoke", image_id=original.image_id, account_ids=accounts
    )

    assert revoked["status"] == "succeeded", revoked
    # The revoke of the original took back the shares of its re-encrypted copy.
    assert not set(accounts) & launch_permission_accounts(double, shared)
    remaining = {
        s["principal"]
        for s in (
            await service.client.get("/v1/shares", params={"image_id": original.image_id})
        ).json()["items"]
    }
    assert not set(accounts) & remaining


async def test_without_reencrypt_the_aws_managed_key_error_names_the_option(
    service: Service,
) -> None:
    original = seed.create_aws_managed_key_image(service.double.url)

    job = await run_job(service, image_id=original.image_id, account_ids=new_account_ids(1))

    assert job["error"]["code"] == "AwsManagedKey"
    assert "reencrypt" in job["error"]["message"]
