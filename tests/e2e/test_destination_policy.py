"""Every job says what identities in a destination need in their own IAM policy."""

from __future__ import annotations

from typing import Any

from app.sandbox import seed
from tests.conftest import Service, new_account_ids
from tests.e2e.test_revoke import run_job

OTHER = "eu-west-1"


def assert_iam_policy(policy: dict[str, Any]) -> None:
    """The shape IAM accepts: a Version and Allow statements with Action and Resource."""
    assert policy["Version"] == "2012-10-17"
    assert isinstance(policy["Statement"], list) and policy["Statement"]
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        assert statement["Action"] and statement["Resource"]
        assert str(statement["Sid"]).isalnum()


def key_resources(policy: dict[str, Any]) -> set[str]:
    return {
        resource
        for statement in policy["Statement"]
        if any(str(a).startswith("kms:") for a in _list(statement["Action"]))
        for resource in _list(statement["Resource"])
    }


def actions(policy: dict[str, Any]) -> set[str]:
    return {a for statement in policy["Statement"] for a in _list(statement["Action"])}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


async def test_the_policy_names_exactly_the_keys_of_every_region(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    other = seed.create_customer_key(service.double.url, region=OTHER)

    job = await run_job(
        service,
        image_id=image.image_id,
        account_ids=new_account_ids(1),
        regions=[OTHER],
        region_kms_key_ids={OTHER: other.key_arn},
    )

    assert job["status"] == "succeeded", job
    policy = job["destination_policy"]
    assert_iam_policy(policy)
    assert key_resources(policy) == {key.key_arn, other.key_arn}
    assert {"kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant"} <= actions(policy)
    assert "ec2:CopyImage" not in actions(policy)
    answer = await service.client.get(f"/v1/jobs/{job['id']}/destination-policy")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == policy


async def test_with_copy_the_policy_allows_copying(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)

    job = await run_job(service, image_id=image.image_id, account_ids=new_account_ids(1), copy={})

    assert job["status"] == "succeeded", job
    assert_iam_policy(job["destination_policy"])
    assert {"ec2:CopyImage", "ec2:CreateTags"} <= actions(job["destination_policy"])
    assert key_resources(job["destination_policy"]) == {key.key_arn}


async def test_an_unknown_job_has_no_policy(service: Service) -> None:
    answer = await service.client.get("/v1/jobs/job-0/destination-policy")
    assert answer.status_code == 404
