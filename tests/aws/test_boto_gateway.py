"""The boto gateway against the moto double over HTTP: what lands on AWS, and how errors look."""

from __future__ import annotations

import json
import random

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from botocore.parsers import ResponseParserError

from app.aws.boto_gateway import GRANT_OPERATIONS, BotoAwsGateway
from app.aws.call_errors import AwsCallError, ErrorKind
from app.aws.gateway import RoleSession
from app.aws.sessions import as_call_error, client_config
from app.domain.principals import Principal, account
from app.domain.types import PrincipalType
from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.aws.conftest import (
    DESTINATION_ACCOUNT,
    DESTINATION_ROLE,
    REGION,
    SOURCE_ACCOUNT,
    Boto,
    Calls,
)

OTHER_ACCOUNT = "444455556666"
ORG_ARN = "arn:aws:organizations::999988887777:organization/o-abcdefghij"


def seed_image(double: AwsDouble, snapshots: int = 1) -> seed.SeededImage:
    """An AMI in the source account whose snapshots are encrypted with a new customer key."""
    key = seed.create_customer_key(double.url)
    return seed.create_encrypted_image(double.url, key.key_arn, snapshot_count=snapshots)


async def test_own_account_id_is_asked_once(gateway: BotoAwsGateway, calls: Calls) -> None:
    assert await gateway.own_account_id() == SOURCE_ACCOUNT
    assert await gateway.own_account_id() == SOURCE_ACCOUNT
    assert calls.outcomes("sts:GetCallerIdentity") == ["ok"]


async def test_describes_an_encrypted_image_its_snapshots_and_key(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    seeded = seed_image(double, snapshots=2)
    image_id, snapshot_ids, key_arn = seeded.image_id, seeded.snapshot_ids, seeded.key_arn
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        image = await source.describe_image(image_id)
        assert image is not None
        snapshots = await source.describe_snapshots(image.snapshot_ids)
        key = await source.describe_key(snapshots[0].kms_key_id or "")

    assert (image.image_id, image.owner_id, image.state) == (image_id, SOURCE_ACCOUNT, "available")
    assert image.root_device_type == "ebs"
    assert sorted(image.snapshot_ids) == sorted(snapshot_ids)
    assert {s.snapshot_id for s in snapshots} == set(snapshot_ids)
    assert all(s.encrypted and s.kms_key_id == key_arn for s in snapshots)
    assert (key.key_arn, key.is_aws_managed) == (key_arn, False)


async def test_an_aws_managed_key_is_reported_as_such(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    seeded = seed.create_aws_managed_key_image(double.url)
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        (snapshot,) = await source.describe_snapshots(seeded.snapshot_ids)
        key = await source.describe_key(snapshot.kms_key_id or "")
    assert key.is_aws_managed and key.key_arn.startswith("arn:aws:kms:")


async def test_an_instance_store_image_says_so(gateway: BotoAwsGateway, double: AwsDouble) -> None:
    seeded = seed.create_instance_store_image(double.url)
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        image = await source.describe_image(seeded.image_id)
    assert image is not None
    assert (image.root_device_type, image.snapshot_ids) == ("instance-store", ())


async def test_an_unknown_or_malformed_image_is_none(gateway: BotoAwsGateway, calls: Calls) -> None:
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        assert await source.describe_image("ami-0123456789abcdef0") is None
        assert await source.describe_image("not-an-image") is None
    assert calls.outcomes("ec2:DescribeImages") == [
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Malformed",
    ]


async def test_key_policy_round_trip_carries_the_request_id(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    key_arn = seed.create_customer_key(double.url).key_arn
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        policy = json.loads(await source.get_key_policy(key_arn))
        policy["Statement"].append(
            {
                "Sid": "AmiShareTest",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{DESTINATION_ACCOUNT}:root"},
                "Action": "kms:DescribeKey",
                "Resource": "*",
            }
        )
        change = await source.put_key_policy(key_arn, json.dumps(policy), [DESTINATION_ACCOUNT])
        stored = json.loads(await source.get_key_policy(key_arn))

    assert (change.api, change.resource, change.principals) == (
        "kms:PutKeyPolicy",
        key_arn,
        (DESTINATION_ACCOUNT,),
    )
    assert change.request_id
    assert stored == policy


async def test_create_grant_names_the_destination_root(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    key_arn = seed.create_customer_key(double.url).key_arn
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        grant_id, change = await source.create_grant(key_arn, DESTINATION_ACCOUNT, "amishare-t1")

    grants = aws.client("kms").list_grants(KeyId=key_arn)["Grants"]
    grant = next(g for g in grants if g["GrantId"] == grant_id)
    assert grant["GranteePrincipal"] == f"arn:aws:iam::{DESTINATION_ACCOUNT}:root"
    assert grant["Name"] == "amishare-t1"
    assert set(grant["Operations"]) == {
        "Decrypt",
        "DescribeKey",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "CreateGrant",
    }
    assert sorted(grant["Operations"]) == sorted(GRANT_OPERATIONS)
    assert (change.api, change.resource, change.principals) == (
        "kms:CreateGrant",
        key_arn,
        (DESTINATION_ACCOUNT,),
    )
    assert change.detail == {"grant_id": grant_id, "name": "amishare-t1", "operation": "create"}


async def test_create_grant_twice_with_one_name_is_one_grant(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    key_arn = seed.create_customer_key(double.url).key_arn
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        first, _ = await source.create_grant(key_arn, DESTINATION_ACCOUNT, "amishare-again")
        second, _ = await source.create_grant(key_arn, DESTINATION_ACCOUNT, "amishare-again")
    assert first == second


async def test_list_grants_reads_every_page_with_names_and_issuers(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    key_arn = seed.create_customer_key(double.url).key_arn
    accounts = [f"2{i:011d}" for i in range(120)]
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        made = {
            (await source.create_grant(key_arn, account, f"amishare-{account}"))[0]
            for account in accounts
        }
        listed = await source.list_grants(key_arn)

    assert {g.grant_id for g in listed} == made  # more than one page of 100
    by_name = {g.name: g for g in listed}
    assert by_name[f"amishare-{accounts[0]}"].grantee_principal == (
        f"arn:aws:iam::{accounts[0]}:root"
    )
    assert {g.issuing_account for g in listed} == {f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}


async def test_snapshot_permissions_lists_the_accounts(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        await source.add_snapshot_permission(image.snapshot_ids[0], [DESTINATION_ACCOUNT])
        found = await source.snapshot_permissions(image.snapshot_ids[0])

    assert found == {DESTINATION_ACCOUNT}


async def test_a_grant_already_gone_is_not_an_error(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    key_arn = seed.create_customer_key(double.url).key_arn
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        grant_id, _ = await source.create_grant(key_arn, DESTINATION_ACCOUNT, "amishare-gone")
        change = await source.revoke_grant(key_arn, grant_id)
        again = await source.revoke_grant(key_arn, grant_id)

    assert change is not None and change.api == "kms:RevokeGrant"
    assert change.detail == {"grant_id": grant_id, "operation": "revoke"}
    assert again is None
    assert grant_id not in {
        g["GrantId"] for g in aws.client("kms").list_grants(KeyId=key_arn)["Grants"]
    }


def volume_permissions(aws: Boto, snapshot_id: str) -> set[str]:
    answer = aws.client("ec2").describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return {p["UserId"] for p in answer["CreateVolumePermissions"] if "UserId" in p}


async def test_snapshot_permission_add_and_remove(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    (snapshot_id,) = seed_image(double).snapshot_ids
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        added = await source.add_snapshot_permission(
            snapshot_id, [DESTINATION_ACCOUNT, OTHER_ACCOUNT]
        )
        after_add = volume_permissions(aws, snapshot_id)
        removed = await source.remove_snapshot_permission(snapshot_id, [OTHER_ACCOUNT])

    assert after_add == {DESTINATION_ACCOUNT, OTHER_ACCOUNT}
    assert volume_permissions(aws, snapshot_id) == {DESTINATION_ACCOUNT}
    assert (added.api, added.resource, added.detail) == (
        "ec2:ModifySnapshotAttribute",
        snapshot_id,
        {"operation": "add"},
    )
    assert removed.principals == (OTHER_ACCOUNT,) and removed.detail == {"operation": "remove"}


async def test_snapshot_permission_takes_1_to_500_accounts(
    gateway: BotoAwsGateway, calls: Calls
) -> None:
    too_many = [f"{n:012d}" for n in range(501)]
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        with pytest.raises(ValueError, match="1 to 500"):
            await source.add_snapshot_permission("snap-0123456789abcdef0", too_many)
        with pytest.raises(ValueError, match="1 to 500"):
            await source.remove_snapshot_permission("snap-0123456789abcdef0", [])
    assert calls.outcomes("ec2:ModifySnapshotAttribute") == []


def launch_permissions(aws: Boto, image_id: str) -> list[dict[str, str]]:
    answer = aws.client("ec2").describe_image_attribute(
        ImageId=image_id, Attribute="launchPermission"
    )
    return list(answer["LaunchPermissions"])


async def test_launch_permission_add_and_remove(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    image_id = seed_image(double).image_id
    organization = Principal(ORG_ARN, PrincipalType.ORGANIZATION)
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        added = await source.add_launch_permission(
            image_id, [account(DESTINATION_ACCOUNT), account(OTHER_ACCOUNT), organization]
        )
        listed = await source.launch_permissions(image_id)
        await source.remove_launch_permission(image_id, [account(OTHER_ACCOUNT)])

    assert set(listed) == {account(DESTINATION_ACCOUNT), account(OTHER_ACCOUNT), organization}
    assert sorted(launch_permissions(aws, image_id), key=str) == sorted(
        [{"UserId": DESTINATION_ACCOUNT}, {"OrganizationArn": ORG_ARN}], key=str
    )
    assert (added.api, added.resource, added.detail) == (
        "ec2:ModifyImageAttribute",
        image_id,
        {"operation": "add"},
    )
    assert added.principals == (DESTINATION_ACCOUNT, OTHER_ACCOUNT, ORG_ARN)


async def test_public_group_entries_are_never_reported(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    image_id = seed_image(double).image_id
    aws.client("ec2").modify_image_attribute(
        ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}, {"UserId": OTHER_ACCOUNT}]}
    )
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        assert await source.launch_permissions(image_id) == [account(OTHER_ACCOUNT)]


async def test_a_principal_named_all_is_refused_before_any_call(
    gateway: BotoAwsGateway, calls: Calls
) -> None:
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        with pytest.raises(ValueError, match="publicly"):
            await source.add_launch_permission("ami-0123456789abcdef0", [account("all")])
        with pytest.raises(ValueError, match="no principals"):
            await source.add_launch_permission("ami-0123456789abcdef0", [])
    assert calls.outcomes("ec2:ModifyImageAttribute") == []


async def test_a_malformed_account_id_is_an_invalid_principal(
    gateway: BotoAwsGateway, double: AwsDouble, aws: Boto
) -> None:
    image_id = seed_image(double).image_id
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        with pytest.raises(AwsCallError) as raised:
            await source.add_launch_permission(
                image_id, [account(DESTINATION_ACCOUNT), account("12345")]
            )

    error = raised.value
    assert (error.operation, error.code) == (
        "ec2:ModifyImageAttribute",
        "InvalidAMIAttributeItemValue",
    )
    assert (error.kind, error.status, error.retryable) == (ErrorKind.INVALID_PRINCIPAL, 400, False)
    assert "12345" in error.message and error.request_id
    assert launch_permissions(aws, image_id) == []  # the whole call failed


async def test_the_destination_sees_the_image_only_once_shared(
    gateway: BotoAwsGateway, double: AwsDouble, calls: Calls
) -> None:
    seeded = seed_image(double)
    image_id, key_arn = seeded.image_id, seeded.key_arn or ""
    since = len(double.requests())
    async with gateway.destination(DESTINATION_ACCOUNT, REGION) as destination:
        before = (await destination.can_see_image(image_id), await destination.can_use_key(key_arn))
        async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
            await source.add_launch_permission(image_id, [account(DESTINATION_ACCOUNT)])
            await source.create_grant(key_arn, DESTINATION_ACCOUNT, "amishare-dest")
        after = (await destination.can_see_image(image_id), await destination.can_use_key(key_arn))

    assert destination.account_id == DESTINATION_ACCOUNT
    assert before == (False, False)
    assert after == (True, True)
    assert calls.outcomes("sts:AssumeRole") == ["ok"]
    checks = [r for r in double.requests(since) if r.action in ("DescribeImages", "DescribeKey")]
    assert {r.account for r in checks} == {DESTINATION_ACCOUNT}


async def test_a_source_role_is_assumed_in_the_source_account(
    double: AwsDouble, calls: Calls
) -> None:
    since = len(double.requests())
    gateway = BotoAwsGateway(
        endpoint_url=double.url,
        source_role_name="amishare-source",
        external_id="ext-id-1",
        on_call=calls,
    )
    async with gateway, gateway.source(OTHER_ACCOUNT, REGION) as source:
        assert source.account_id == OTHER_ACCOUNT
        assert await source.describe_image("ami-0123456789abcdef0") is None

    assumed = [r for r in double.requests(since) if r.action == "AssumeRole"]
    assert [r.params for r in assumed] == [
        {
            "RoleArn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/amishare-source",
            "RoleSessionName": "amishare",
            "ExternalId": "ext-id-1",
        }
    ]
    described = [r for r in double.requests(since) if r.action == "DescribeImages"]
    assert [r.account for r in described] == [OTHER_ACCOUNT]


async def test_role_sessions_carry_the_job_and_source_identity(
    double: AwsDouble, calls: Calls
) -> None:
    since = len(double.requests())
    gateway = BotoAwsGateway(
        endpoint_url=double.url,
        source_role_name="amishare-source",
        destination_role_name=DESTINATION_ROLE,
        on_call=calls,
    )
    session = RoleSession("job-0123456789abcdef0123456789abcdef", "platform-ci")
    async with gateway:
        async with gateway.source(OTHER_ACCOUNT, REGION, session):
            pass
        async with gateway.destination(DESTINATION_ACCOUNT, REGION, session):
            pass

    assumed = [r.params or {} for r in double.requests(since) if r.action == "AssumeRole"]
    assert [p["RoleSessionName"] for p in assumed] == [session.name, session.name]
    assert session.name == "amishare-job-0123456789abcdef0123456789abcdef"
    assert [p["SourceIdentity"] for p in assumed] == ["platform-ci", "platform-ci"]


async def test_expired_role_credentials_are_assumed_again(double: AwsDouble, calls: Calls) -> None:
    gateway = BotoAwsGateway(endpoint_url=double.url, source_role_name="amishare-source")
    async with gateway, gateway.source(OTHER_ACCOUNT, REGION) as source:
        assert await source.describe_image("ami-0123456789abcdef0") is None
        double.set_faults(credential_lifetime_seconds=0.001)
        with pytest.raises(AwsCallError) as raised:
            await source.describe_image("ami-0123456789abcdef0")
        assert raised.value.kind is ErrorKind.EXPIRED_CREDENTIALS and raised.value.retryable
        double.set_faults(credential_lifetime_seconds=60)
        # The next call signs with the role assumed again.
        assert await source.describe_image("ami-0123456789abcdef0") is None


async def test_a_destination_needs_the_destination_role(double: AwsDouble) -> None:
    async with BotoAwsGateway(endpoint_url=double.url) as gateway:
        with pytest.raises(ValueError, match="DESTINATION_ROLE_NAME"):
            async with gateway.destination(DESTINATION_ACCOUNT, REGION):
                pass


async def test_an_unreachable_endpoint_is_a_transient_connection_error(calls: Calls) -> None:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1)
    gateway = BotoAwsGateway(endpoint_url="http://127.0.0.1:9", config=config, on_call=calls)
    async with gateway:
        with pytest.raises(AwsCallError) as raised:
            await gateway.own_account_id()
    assert (raised.value.code, raised.value.kind) == ("ConnectionError", ErrorKind.TRANSIENT)
    assert raised.value.retryable
    assert calls.outcomes("sts:GetCallerIdentity") == ["ConnectionError"]


async def test_a_broken_metrics_hook_never_fails_a_call(double: AwsDouble) -> None:
    def broken(api: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    async with BotoAwsGateway(endpoint_url=double.url, on_call=broken) as gateway:
        assert await gateway.own_account_id() == SOURCE_ACCOUNT


async def test_a_refused_assume_role_is_an_aws_call_error(
    gateway: BotoAwsGateway, double: AwsDouble
) -> None:
    double.set_faults(deny_assume_role_into=(DESTINATION_ACCOUNT,))
    with pytest.raises(AwsCallError) as raised:
        async with gateway.destination(DESTINATION_ACCOUNT, REGION):
            pass

    error = raised.value
    assert (error.operation, error.code, error.status) == ("sts:AssumeRole", "AccessDenied", 403)
    assert error.kind is ErrorKind.ACCESS_DENIED
    assert f"arn:aws:iam::{DESTINATION_ACCOUNT}:role/{DESTINATION_ROLE}" in error.message


def seed_failing_once(rate: float) -> int:
    """A seed whose first draw is a fault and whose second is not (one draw per matching call)."""
    return next(
        seed
        for seed in range(1000)
        if (draws := random.Random(seed)) and draws.random() < rate <= draws.random()
    )


async def test_throttling_is_retried_by_botocore_and_the_call_succeeds(
    gateway: BotoAwsGateway, aws: Boto, double: AwsDouble, calls: Calls
) -> None:
    image_id = seed_image(double).image_id
    since = len(double.requests())
    double.set_faults(
        throttle_rate=0.5, actions=("ModifyImageAttribute",), seed=seed_failing_once(0.5)
    )
    async with gateway.source(SOURCE_ACCOUNT, REGION) as source:
        await source.add_launch_permission(image_id, [account(DESTINATION_ACCOUNT)])

    attempts = [r for r in double.requests(since) if r.action == "ModifyImageAttribute"]
    assert [(r.status, r.fault) for r in attempts] == [(503, "throttle"), (200, None)]
    assert calls.outcomes("ec2:ModifyImageAttribute") == ["ok"]
    assert launch_permissions(aws, image_id) == [{"UserId": DESTINATION_ACCOUNT}]


async def test_throttling_that_outlasts_the_retries_is_classified_throttled(
    double: AwsDouble, calls: Calls
) -> None:
    # Two attempts, not three: the same path as production, with one backoff less to wait for.
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 2})
    since = len(double.requests())
    double.set_faults(throttle_rate=1.0, throttle_all_calls=True, actions=("DescribeKey",))
    gateway = BotoAwsGateway(endpoint_url=double.url, config=config, on_call=calls)
    async with gateway, gateway.source(SOURCE_ACCOUNT, REGION) as source:
        with pytest.raises(AwsCallError) as raised:
            await source.describe_key("alias/anything")

    assert (raised.value.code, raised.value.kind) == ("ThrottlingException", ErrorKind.THROTTLED)
    assert calls.outcomes("kms:DescribeKey") == ["ThrottlingException"]
    assert [r.fault for r in double.requests(since) if r.action == "DescribeKey"] == [
        "throttle"
    ] * 2


async def test_clients_make_three_attempts_in_standard_mode(double: AwsDouble) -> None:
    session = aioboto3.Session()
    async with session.client("kms", endpoint_url=double.url, config=client_config()) as kms:
        retries = kms.meta.config.retries
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 3)


async def test_a_server_error_is_transient_and_carries_the_request_id(
    double: AwsDouble, calls: Calls
) -> None:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
    double.set_faults(error_rate=1.0, actions=("GetKeyPolicy",))
    gateway = BotoAwsGateway(endpoint_url=double.url, config=config, on_call=calls)
    async with gateway, gateway.source(SOURCE_ACCOUNT, REGION) as source:
        with pytest.raises(AwsCallError) as raised:
            await source.get_key_policy("alias/anything")

    error = raised.value
    assert (error.operation, error.code, error.status) == (
        "kms:GetKeyPolicy",
        "KMSInternalException",
        500,
    )
    assert error.kind is ErrorKind.TRANSIENT and error.retryable and error.request_id


def test_an_unreadable_answer_is_a_transient_failure() -> None:
    error = as_call_error("ec2:DescribeImages", ResponseParserError("<!doctype html>"))
    assert error is not None
    assert (error.code, error.kind) == ("InternalFailure", ErrorKind.TRANSIENT)


def test_a_bug_is_not_disguised_as_an_aws_error() -> None:
    assert as_call_error("ec2:DescribeImages", KeyError("ImageId")) is None
