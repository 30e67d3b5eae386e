"""The AWS behaviours moto_ext adds to moto 5.2.5, shown over HTTP through the double."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import moto
import pytest
from botocore.exceptions import ClientError
from moto.core import responses
from moto.core.utils import method_names_from_class
from moto.kms.responses import KmsResponse

from app.sandbox import moto_ext, seed
from app.sandbox.aws_double import AwsDouble
from tests.aws_double.conftest import BYSTANDER, DESTINATION, REGION, SOURCE, Account

ORG_ARN = "arn:aws:organizations::999988887777:organization/o-abcdefghij"
FOR_AWS_RESOURCES = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
OU_ARN = "arn:aws:organizations::999988887777:ou/o-abcdefghij/ou-ab12-cdefgh34"
UNKNOWN = "999999999999"


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def image(account: Account, image_id: str) -> dict[str, Any]:
    images: list[dict[str, Any]] = account.ec2.describe_images(ImageIds=[image_id])["Images"]
    assert len(images) == 1
    return images[0]


def snapshot(account: Account, snapshot_id: str) -> dict[str, Any]:
    snapshots = account.ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    return dict(snapshots[0])


def share_with(source: Account, image_id: str, *principals: dict[str, str]) -> None:
    source.ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": list(principals)})


def add_statement(source: Account, key_id: str, statement: dict[str, Any]) -> None:
    policy = json.loads(source.kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    policy["Statement"].append(statement)
    source.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))


def allow(principal: Any, action: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Sid": "AmiShareTest",
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Resource": "*",
        **extra,
    }


def volume_permissions(source: Account, snapshot_id: str) -> list[dict[str, str]]:
    answer = source.ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return list(answer["CreateVolumePermissions"])


# --- RegisterImage with block device mappings ------------------------------------------------


def test_register_image_keeps_encrypted_snapshot_mappings(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    seeded = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)

    described = image(source, seeded.image_id)

    assert described["RootDeviceType"] == "ebs"
    assert described["RootDeviceName"] == seed.ROOT_DEVICE
    ebs = [m["Ebs"] for m in described["BlockDeviceMappings"]]
    assert [e["SnapshotId"] for e in ebs] == list(seeded.snapshot_ids)
    assert all(e["Encrypted"] for e in ebs)
    assert seeded.key_arn == key.key_arn


def test_register_image_with_an_unknown_snapshot_fails_and_creates_nothing(
    source: Account,
) -> None:
    with pytest.raises(ClientError) as error:
        source.ec2.register_image(
            Name="broken",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0"}}],
        )
    assert error_code(error) == "InvalidSnapshot.NotFound"
    assert source.ec2.describe_images(Owners=["self"])["Images"] == []


def test_register_image_does_not_leave_moto_auto_snapshot_behind(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url, snapshot_count=1)

    owned = source.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]

    assert [s["SnapshotId"] for s in owned] == list(seeded.snapshot_ids)
    assert image(source, seeded.image_id)["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is False


def test_snapshot_in_use_by_a_registered_image_cannot_be_deleted(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)

    with pytest.raises(ClientError) as error:
        source.ec2.delete_snapshot(SnapshotId=seeded.snapshot_ids[0])
    assert error_code(error) == "InvalidSnapshot.InUse"


def test_image_with_only_ephemeral_mappings_is_instance_store(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_instance_store_image(double.url)

    described = image(source, seeded.image_id)

    assert described["RootDeviceType"] == "instance-store"
    assert described["BlockDeviceMappings"] == [
        {"DeviceName": seed.ROOT_DEVICE, "VirtualName": "ephemeral0"}
    ]


def test_image_registered_from_an_s3_manifest_is_instance_store(source: Account) -> None:
    image_id = source.ec2.register_image(
        Name="from-manifest", ImageLocation="amzn-s3-demo-bucket/image.manifest.xml"
    )["ImageId"]

    assert image(source, image_id)["RootDeviceType"] == "instance-store"


# --- Snapshots keep their KMS key ------------------------------------------------------------


@pytest.mark.parametrize("reference", ["key_id", "key_arn", "alias_name", "alias_arn"])
def test_snapshot_of_encrypted_volume_keeps_key_as_arn(
    double: AwsDouble, source: Account, reference: str
) -> None:
    key = seed.create_customer_key(double.url)
    source.kms.create_alias(AliasName="alias/golden", TargetKeyId=key.key_id)
    references = {
        "key_id": key.key_id,
        "key_arn": key.key_arn,
        "alias_name": "alias/golden",
        "alias_arn": f"arn:aws:kms:{REGION}:{SOURCE}:alias/golden",
    }

    seeded = seed.create_encrypted_image(double.url, references[reference])

    described = snapshot(source, seeded.snapshot_ids[0])
    assert described["Encrypted"] is True
    assert described["KmsKeyId"] == key.key_arn


# --- The AWS managed EBS key -----------------------------------------------------------------


def test_aws_ebs_alias_key_is_aws_managed(double: AwsDouble, source: Account) -> None:
    seeded = seed.create_aws_managed_key_image(double.url)
    assert seeded.key_arn is not None

    metadata = source.kms.describe_key(KeyId=seeded.key_arn)["KeyMetadata"]

    assert metadata["KeyManager"] == "AWS"
    assert source.kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"] == seeded.key_arn


def test_encrypted_volume_without_key_uses_the_aws_managed_ebs_key(source: Account) -> None:
    volume = source.ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a", Encrypted=True)
    snapshot_id = source.ec2.create_snapshot(VolumeId=volume["VolumeId"])["SnapshotId"]

    key_arn = snapshot(source, snapshot_id)["KmsKeyId"]

    assert key_arn == source.kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert source.kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyManager"] == "AWS"


def test_customer_keys_stay_customer_managed(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)

    assert source.kms.describe_key(KeyId=key.key_arn)["KeyMetadata"]["KeyManager"] == "CUSTOMER"


# --- Cross-account visibility of images ------------------------------------------------------


def test_destination_sees_image_only_while_launch_permission_names_it(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)

    def visible() -> tuple[bool, list[str]]:
        try:
            by_id = image(destination, seeded.image_id)["ImageId"] == seeded.image_id
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidAMIID.NotFound"
            by_id = False
        shared = destination.ec2.describe_images(ExecutableUsers=["self"])["Images"]
        return by_id, [i["ImageId"] for i in shared]

    assert visible() == (False, [])
    share_with(source, seeded.image_id, {"UserId": DESTINATION})
    assert visible() == (True, [seeded.image_id])
    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Remove": [{"UserId": DESTINATION}]}
    )
    assert visible() == (False, [])


def test_shared_image_keeps_its_owner_and_mappings_for_the_destination(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    seeded = seed.create_encrypted_image(double.url, key.key_id)
    share_with(source, seeded.image_id, {"UserId": DESTINATION})

    described = image(destination, seeded.image_id)
    by_owner = destination.ec2.describe_images(Owners=[SOURCE])["Images"]

    assert described["OwnerId"] == SOURCE
    assert described["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == seeded.snapshot_ids[0]
    assert [i["ImageId"] for i in by_owner] == [seeded.image_id]


def test_image_shared_with_one_account_stays_hidden_from_others(
    double: AwsDouble, source: Account, account: Callable[[str], Account]
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    share_with(source, seeded.image_id, {"UserId": DESTINATION})

    with pytest.raises(ClientError) as error:
        image(account(BYSTANDER), seeded.image_id)
    assert error_code(error) == "InvalidAMIID.NotFound"


def test_destination_cannot_change_a_shared_image(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    share_with(source, seeded.image_id, {"UserId": DESTINATION})

    with pytest.raises(ClientError) as error:
        share_with(destination, seeded.image_id, {"UserId": BYSTANDER})
    assert error_code(error) == "AuthFailure"


def test_org_and_ou_launch_permissions_are_stored_and_removed(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    principals = [{"OrganizationArn": ORG_ARN}, {"OrganizationalUnitArn": OU_ARN}]

    def launch_permissions() -> list[dict[str, str]]:
        answer = source.ec2.describe_image_attribute(
            ImageId=seeded.image_id, Attribute="launchPermission"
        )
        return list(answer["LaunchPermissions"])

    share_with(source, seeded.image_id, *principals)
    assert launch_permissions() == principals
    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Remove": principals[:1]}
    )
    assert launch_permissions() == principals[1:]


# --- Cross-account DescribeKey ---------------------------------------------------------------


def test_describe_key_across_accounts_needs_policy_or_grant(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)

    def can_describe() -> bool:
        try:
            destination.kms.describe_key(KeyId=key.key_arn)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "AccessDeniedException"
            return False
        return True

    assert not can_describe()
    add_statement(source, key.key_id, allow({"AWS": f"arn:aws:iam::{BYSTANDER}:root"}, "kms:*"))
    assert not can_describe()
    grant = source.kms.create_grant(
        KeyId=key.key_id,
        GranteePrincipal=f"arn:aws:iam::{DESTINATION}:root",
        Operations=["Decrypt", "DescribeKey"],
    )
    assert can_describe()
    source.kms.revoke_grant(KeyId=key.key_id, GrantId=grant["GrantId"])
    assert not can_describe()
    add_statement(source, key.key_id, allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:*"))
    assert can_describe()


@pytest.mark.parametrize(
    ("principal", "action"),
    [
        ({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:DescribeKey"),
        ({"AWS": [f"arn:aws:iam::{BYSTANDER}:root", f"arn:aws:iam::{DESTINATION}:root"]}, "kms:*"),
        ({"AWS": DESTINATION}, ["kms:Decrypt", "kms:Describe*"]),
        ("*", "kms:DescribeKey"),
    ],
    ids=["string-principal", "list-principal", "bare-account-id", "unconditioned-star"],
)
def test_key_policy_allow_forms_grant_describe_key(
    double: AwsDouble, source: Account, destination: Account, principal: Any, action: Any
) -> None:
    key = seed.create_customer_key(double.url)
    add_statement(source, key.key_id, allow(principal, action))

    metadata = destination.kms.describe_key(KeyId=key.key_arn)["KeyMetadata"]

    assert metadata["Arn"] == key.key_arn
    assert metadata["AWSAccountId"] == SOURCE


@pytest.mark.parametrize(
    "statement",
    [
        allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, ["kms:Decrypt", "kms:Encrypt"]),
        allow({"AWS": f"arn:aws:iam::{DESTINATION}:role/x"}, "kms:DescribeKey"),
        allow("*", "kms:*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}),
        allow(
            {"AWS": f"arn:aws:iam::{DESTINATION}:root"},
            "kms:DescribeKey",
            Condition={"StringEquals": {"kms:CallerAccount": DESTINATION}},
        ),
    ],
    ids=["other-actions", "role-not-account", "org-condition", "conditioned-account"],
)
def test_key_policy_statements_that_do_not_grant_the_account(
    double: AwsDouble, source: Account, destination: Account, statement: dict[str, Any]
) -> None:
    key = seed.create_customer_key(double.url)
    add_statement(source, key.key_id, statement)

    with pytest.raises(ClientError) as error:
        destination.kms.describe_key(KeyId=key.key_arn)
    assert error_code(error) == "AccessDeniedException"


def test_explicit_deny_beats_allow_across_accounts(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    root = {"AWS": f"arn:aws:iam::{DESTINATION}:root"}
    add_statement(source, key.key_id, allow(root, "kms:*"))
    add_statement(source, key.key_id, {**allow(root, "kms:DescribeKey"), "Effect": "Deny"})

    with pytest.raises(ClientError) as error:
        destination.kms.describe_key(KeyId=key.key_arn)
    assert error_code(error) == "AccessDeniedException"


def test_describe_key_of_a_missing_foreign_key_is_not_found(destination: Account) -> None:
    arn = f"arn:aws:kms:{REGION}:{SOURCE}:key/00000000-0000-0000-0000-000000000000"

    with pytest.raises(ClientError) as error:
        destination.kms.describe_key(KeyId=arn)
    assert error_code(error) == "NotFoundException"


# --- ModifySnapshotAttribute -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["structured", "operation-type"])
def test_modify_snapshot_attribute_accepts_both_request_forms(
    double: AwsDouble, source: Account, form: str
) -> None:
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]

    def change(operation: str, user_id: str) -> None:
        if form == "structured":
            permission = {operation.capitalize(): [{"UserId": user_id}]}
            source.ec2.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                CreateVolumePermission=permission,
            )
        else:
            source.ec2.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                OperationType=operation,
                UserIds=[user_id],
            )

    change("add", DESTINATION)
    change("add", BYSTANDER)
    assert sorted(p["UserId"] for p in volume_permissions(source, snapshot_id)) == [
        DESTINATION,
        BYSTANDER,
    ]
    change("remove", DESTINATION)
    assert volume_permissions(source, snapshot_id) == [{"UserId": BYSTANDER}]


@pytest.mark.parametrize("bad_id", ["12345", "abcdefghijkl", "1234567890123", UNKNOWN])
@pytest.mark.parametrize("form", ["structured", "operation-type"])
def test_modify_snapshot_attribute_rejects_malformed_or_unknown_account(
    double: AwsDouble, source: Account, bad_id: str, form: str
) -> None:
    double.set_unknown_accounts([UNKNOWN])
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]
    request: dict[str, Any] = {"SnapshotId": snapshot_id, "Attribute": "createVolumePermission"}
    if form == "structured":
        request["CreateVolumePermission"] = {"Add": [{"UserId": DESTINATION}, {"UserId": bad_id}]}
    else:
        request.update(OperationType="add", UserIds=[DESTINATION, bad_id])

    with pytest.raises(ClientError) as error:
        source.ec2.modify_snapshot_attribute(**request)

    assert error_code(error) == "InvalidAMIAttributeItemValue"
    assert bad_id in error.value.response["Error"]["Message"]
    assert volume_permissions(source, snapshot_id) == []


def test_modify_snapshot_attribute_rejects_more_than_500_changes(
    double: AwsDouble, source: Account
) -> None:
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]
    accounts = [f"{n:012d}" for n in range(100_000_000_000, 100_000_000_501)]

    with pytest.raises(ClientError) as error:
        source.ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            CreateVolumePermission={"Add": [{"UserId": a} for a in accounts]},
        )
    assert error_code(error) == "InvalidParameterValue"
    source.ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Add": [{"UserId": a} for a in accounts[:500]]},
    )
    assert len(volume_permissions(source, snapshot_id)) == 500


def test_modify_snapshot_attribute_refuses_add_and_remove_together(
    double: AwsDouble, source: Account
) -> None:
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]

    with pytest.raises(ClientError) as error:
        source.ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            CreateVolumePermission={
                "Add": [{"UserId": DESTINATION}],
                "Remove": [{"UserId": BYSTANDER}],
            },
        )
    assert error_code(error) == "InvalidParameterCombination"


def test_snapshot_encrypted_with_aws_managed_key_cannot_be_shared(
    double: AwsDouble, source: Account
) -> None:
    snapshot_id = seed.create_aws_managed_key_image(double.url).snapshot_ids[0]

    with pytest.raises(ClientError) as error:
        source.ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            CreateVolumePermission={"Add": [{"UserId": DESTINATION}]},
        )
    assert error_code(error) == "OperationNotPermitted"


def test_encrypted_snapshot_cannot_be_made_public(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)
    snapshot_id = seed.create_encrypted_image(double.url, key.key_id).snapshot_ids[0]

    with pytest.raises(ClientError) as error:
        source.ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            CreateVolumePermission={"Add": [{"Group": "all"}]},
        )
    assert error_code(error) == "OperationNotPermitted"


# --- Unknown accounts ------------------------------------------------------------------------


def test_put_key_policy_refuses_unknown_account_principal(
    double: AwsDouble, source: Account
) -> None:
    double.set_unknown_accounts([UNKNOWN])
    key = seed.create_customer_key(double.url)
    before = source.kms.get_key_policy(KeyId=key.key_id, PolicyName="default")["Policy"]

    with pytest.raises(ClientError) as error:
        add_statement(
            source,
            key.key_id,
            allow(
                {"AWS": [f"arn:aws:iam::{DESTINATION}:root", f"arn:aws:iam::{UNKNOWN}:root"]},
                "kms:*",
            ),
        )

    assert error_code(error) == "MalformedPolicyDocumentException"
    assert error.value.response["Error"]["Message"] == moto_ext.INVALID_PRINCIPALS_MESSAGE
    after = source.kms.get_key_policy(KeyId=key.key_id, PolicyName="default")["Policy"]
    assert after == before


def test_create_grant_refuses_unknown_account_grantee(double: AwsDouble, source: Account) -> None:
    double.set_unknown_accounts([UNKNOWN])
    key = seed.create_customer_key(double.url)

    with pytest.raises(ClientError) as error:
        source.kms.create_grant(
            KeyId=key.key_id,
            GranteePrincipal=f"arn:aws:iam::{UNKNOWN}:root",
            Operations=["DescribeKey"],
        )

    assert error_code(error) == "InvalidArnException"
    assert source.kms.list_grants(KeyId=key.key_id)["Grants"] == []


@pytest.mark.parametrize("bad_id", ["12345", UNKNOWN])
def test_launch_permission_refuses_malformed_or_unknown_account(
    double: AwsDouble, source: Account, bad_id: str
) -> None:
    double.set_unknown_accounts([UNKNOWN])
    seeded = seed.create_unencrypted_image(double.url)

    with pytest.raises(ClientError) as error:
        share_with(source, seeded.image_id, {"UserId": DESTINATION}, {"UserId": bad_id})

    assert error_code(error) == "InvalidAMIAttributeItemValue"
    assert error.value.response["Error"]["Message"] == (
        f'Invalid attribute item value "{bad_id}" for userId item type.'
    )
    attribute = source.ec2.describe_image_attribute(
        ImageId=seeded.image_id, Attribute="launchPermission"
    )
    assert attribute["LaunchPermissions"] == []


def test_permissions_of_an_account_that_became_unknown_can_still_be_removed(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    snapshot_id = seeded.snapshot_ids[0]
    share_with(source, seeded.image_id, {"UserId": BYSTANDER})
    source.ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Add": [{"UserId": BYSTANDER}]},
    )
    double.set_unknown_accounts([BYSTANDER])

    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Remove": [{"UserId": BYSTANDER}]}
    )
    source.ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Remove": [{"UserId": BYSTANDER}]},
    )

    assert volume_permissions(source, snapshot_id) == []


def test_known_accounts_are_accepted_again_once_forgotten(
    double: AwsDouble, source: Account
) -> None:
    double.set_unknown_accounts([UNKNOWN])
    double.set_unknown_accounts([])
    seeded = seed.create_unencrypted_image(double.url)

    share_with(source, seeded.image_id, {"UserId": UNKNOWN})


def test_create_grant_retried_with_same_name_returns_the_same_grant(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    request = {
        "KeyId": key.key_id,
        "GranteePrincipal": f"arn:aws:iam::{DESTINATION}:root",
        "Operations": ["Decrypt", "DescribeKey"],
        "Name": "amishare-retry",
    }

    first = source.kms.create_grant(**request)["GrantId"]
    again = source.kms.create_grant(**request)["GrantId"]
    other = source.kms.create_grant(**{**request, "Operations": ["DescribeKey"]})["GrantId"]

    assert first == again
    assert other != first
    assert len(source.kms.list_grants(KeyId=key.key_id)["Grants"]) == 2


# --- Image and snapshot attributes -----------------------------------------------------------


def test_describe_image_attribute_of_unknown_image_is_not_found(source: Account) -> None:
    with pytest.raises(ClientError) as error:
        source.ec2.describe_image_attribute(ImageId="ami-12345678", Attribute="launchPermission")

    assert error_code(error) == "InvalidAMIID.NotFound"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_describe_image_attribute_reports_the_launch_permissions_set(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)

    def launch_permissions() -> list[dict[str, str]]:
        answer = source.ec2.describe_image_attribute(
            ImageId=seeded.image_id, Attribute="launchPermission"
        )
        assert answer["ImageId"] == seeded.image_id
        return sorted(answer["LaunchPermissions"], key=lambda p: sorted(p.items()))

    share_with(source, seeded.image_id, {"UserId": DESTINATION}, {"UserId": BYSTANDER})
    assert launch_permissions() == [{"UserId": DESTINATION}, {"UserId": BYSTANDER}]
    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Remove": [{"UserId": DESTINATION}]}
    )
    assert launch_permissions() == [{"UserId": BYSTANDER}]
    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id,
        Attribute="launchPermission",
        OperationType="add",
        UserIds=[DESTINATION],
    )
    assert launch_permissions() == [{"UserId": DESTINATION}, {"UserId": BYSTANDER}]


def test_describe_snapshot_attribute_reports_the_create_volume_permissions_set(
    double: AwsDouble, source: Account
) -> None:
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]
    source.ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Add": [{"UserId": DESTINATION}, {"Group": "all"}]},
    )

    answer = source.ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )

    assert answer["SnapshotId"] == snapshot_id
    assert sorted(answer["CreateVolumePermissions"], key=lambda p: sorted(p.items())) == [
        {"Group": "all"},
        {"UserId": DESTINATION},
    ]


def test_reset_image_attribute_removes_every_launch_permission(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    share_with(source, seeded.image_id, {"UserId": DESTINATION}, {"OrganizationArn": ORG_ARN})

    source.ec2.reset_image_attribute(ImageId=seeded.image_id, Attribute="launchPermission")

    attribute = source.ec2.describe_image_attribute(
        ImageId=seeded.image_id, Attribute="launchPermission"
    )
    assert attribute["LaunchPermissions"] == []
    assert destination.ec2.describe_images(ExecutableUsers=["self"])["Images"] == []


def test_reset_snapshot_attribute_removes_every_create_volume_permission(
    double: AwsDouble, source: Account
) -> None:
    snapshot_id = seed.create_unencrypted_image(double.url).snapshot_ids[0]
    source.ec2.modify_snapshot_attribute(
        SnapshotId=snapshot_id,
        Attribute="createVolumePermission",
        CreateVolumePermission={"Add": [{"UserId": DESTINATION}, {"UserId": BYSTANDER}]},
    )

    source.ec2.reset_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission")

    assert volume_permissions(source, snapshot_id) == []


# --- Grants: IssuingAccount, CreationDate, ListGrants filter and pages -----------------------


def grant_to(account: Account, key_arn: str, grantee: str, *operations: str, **extra: Any) -> str:
    answer = account.kms.create_grant(
        KeyId=key_arn,
        GranteePrincipal=f"arn:aws:iam::{grantee}:root",
        Operations=list(operations or ["Decrypt", "DescribeKey"]),
        **extra,
    )
    return str(answer["GrantId"])


def grants(account: Account, key_arn: str, **request: Any) -> list[dict[str, Any]]:
    return list(account.kms.list_grants(KeyId=key_arn, **request)["Grants"])


def test_list_grants_reports_issuing_account_and_creation_date(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    before = datetime.now(UTC) - timedelta(seconds=1)

    grant_id = grant_to(source, key.key_arn, DESTINATION, Name="amishare-x")

    (entry,) = grants(source, key.key_arn)
    assert entry["GrantId"] == grant_id
    assert entry["IssuingAccount"] == f"arn:aws:iam::{SOURCE}:root"
    assert before <= entry["CreationDate"] <= datetime.now(UTC) + timedelta(seconds=1)
    assert entry["Name"] == "amishare-x"


def test_list_grants_filters_by_grantee_principal(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)
    to_destination = grant_to(source, key.key_arn, DESTINATION)
    grant_to(source, key.key_arn, BYSTANDER)

    filtered = grants(source, key.key_arn, GranteePrincipal=f"arn:aws:iam::{DESTINATION}:root")

    assert [g["GrantId"] for g in filtered] == [to_destination]
    assert grants(source, key.key_arn, GranteePrincipal=DESTINATION) == []  # exact principal
    assert len(grants(source, key.key_arn)) == 2


def test_list_grants_pages_with_limit_and_marker(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)
    created = [
        grant_to(source, key.key_arn, f"{n:012d}") for n in range(100_000_000_001, 100_000_000_006)
    ]

    pages: list[dict[str, Any]] = []
    request: dict[str, Any] = {"KeyId": key.key_arn, "Limit": 2}
    while True:
        pages.append(source.kms.list_grants(**request))
        if not pages[-1]["Truncated"]:
            break
        request["Marker"] = pages[-1]["NextMarker"]

    assert [len(p["Grants"]) for p in pages] == [2, 2, 1]
    assert [p["Truncated"] for p in pages] == [True, True, False]
    assert "NextMarker" not in pages[-1]
    assert [g["GrantId"] for p in pages for g in p["Grants"]] == created


def test_list_grants_returns_50_by_default(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)
    for n in range(51):
        grant_to(source, key.key_arn, f"{100_000_000_000 + n:012d}")

    first = source.kms.list_grants(KeyId=key.key_arn)
    rest = source.kms.list_grants(KeyId=key.key_arn, Marker=first["NextMarker"])

    assert (len(first["Grants"]), first["Truncated"]) == (50, True)
    assert (len(rest["Grants"]), rest["Truncated"]) == (1, False)
    assert len(grants(source, key.key_arn, Limit=100)) == 51


def test_list_grants_marker_still_works_after_the_listed_grants_are_revoked(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    created = [
        grant_to(source, key.key_arn, f"{n:012d}") for n in range(100_000_000_001, 100_000_000_005)
    ]
    first = source.kms.list_grants(KeyId=key.key_arn, Limit=2)
    for grant in first["Grants"]:
        source.kms.revoke_grant(KeyId=key.key_arn, GrantId=grant["GrantId"])

    rest = source.kms.list_grants(KeyId=key.key_arn, Limit=2, Marker=first["NextMarker"])

    assert [g["GrantId"] for g in rest["Grants"]] == created[2:]
    assert rest["Truncated"] is False


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"Limit": 101}, "ValidationException"),
        ({"Marker": "not-a-marker"}, "InvalidMarkerException"),
    ],
    ids=["limit-over-100", "unknown-marker"],
)
def test_list_grants_refuses_bad_limit_or_marker(
    double: AwsDouble, source: Account, request_: dict[str, Any], code: str
) -> None:
    key = seed.create_customer_key(double.url)

    with pytest.raises(ClientError) as error:
        source.kms.list_grants(KeyId=key.key_arn, **request_)
    assert error_code(error) == code


def test_grants_on_a_missing_key_are_not_found(source: Account) -> None:
    arn = f"arn:aws:kms:{REGION}:{SOURCE}:key/00000000-0000-0000-0000-000000000000"

    for call in (
        lambda: source.kms.list_grants(KeyId=arn),
        lambda: grant_to(source, arn, DESTINATION),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error_code(error) == "NotFoundException"


# --- Cross-account CreateGrant ---------------------------------------------------------------


def can_create_grant(destination: Account, key_arn: str, *operations: str) -> bool:
    try:
        grant_to(destination, key_arn, BYSTANDER, *operations)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "AccessDeniedException"
        return False
    return True


def test_cross_account_create_grant_allowed_by_the_key_policy(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    assert not can_create_grant(destination, key.key_arn)

    add_statement(
        source, key.key_id, allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:CreateGrant")
    )
    grant_id = grant_to(destination, key.key_arn, BYSTANDER, "Decrypt", "Encrypt")

    (entry,) = grants(source, key.key_arn)
    assert entry["GrantId"] == grant_id
    assert entry["IssuingAccount"] == f"arn:aws:iam::{DESTINATION}:root"
    assert entry["GranteePrincipal"] == f"arn:aws:iam::{BYSTANDER}:root"
    assert entry["KeyId"] == key.key_id


@pytest.mark.parametrize(
    "statements",
    [
        [
            allow(
                {"AWS": f"arn:aws:iam::{DESTINATION}:root"},
                "kms:CreateGrant",
                Condition=FOR_AWS_RESOURCES,
            )
        ],
        [
            allow(
                "*",
                "kms:CreateGrant",
                Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
            )
        ],
        [allow({"AWS": f"arn:aws:iam::{BYSTANDER}:root"}, "kms:CreateGrant")],
        [allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, ["kms:Decrypt", "kms:DescribeKey"])],
        [
            allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:*"),
            {**allow({"AWS": DESTINATION}, "kms:CreateGrant"), "Effect": "Deny"},
        ],
    ],
    ids=["for-aws-resources-only", "org-condition", "other-account", "other-actions", "denied"],
)
def test_key_policy_statements_that_do_not_let_another_account_create_grants(
    double: AwsDouble, source: Account, destination: Account, statements: list[dict[str, Any]]
) -> None:
    key = seed.create_customer_key(double.url)
    for statement in statements:
        add_statement(source, key.key_id, statement)

    assert not can_create_grant(destination, key.key_arn)
    assert grants(source, key.key_arn) == []


def test_a_grant_with_create_grant_lets_the_grantee_account_grant_its_own_operations(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    parent = grant_to(source, key.key_arn, DESTINATION, "Decrypt", "DescribeKey", "CreateGrant")

    assert can_create_grant(destination, key.key_arn, "Decrypt", "DescribeKey")
    assert not can_create_grant(destination, key.key_arn, "Decrypt", "Encrypt")

    issuers = {g["GrantId"]: g["IssuingAccount"] for g in grants(source, key.key_arn)}
    assert issuers.pop(parent) == f"arn:aws:iam::{SOURCE}:root"
    assert list(issuers.values()) == [f"arn:aws:iam::{DESTINATION}:root"]


def test_a_grant_without_create_grant_does_not_let_the_grantee_create_grants(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    grant_to(source, key.key_arn, DESTINATION, "Decrypt", "DescribeKey")

    assert not can_create_grant(destination, key.key_arn, "Decrypt")


def test_create_grant_with_a_bare_key_id_of_another_account_is_not_found(
    double: AwsDouble, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)

    with pytest.raises(ClientError) as error:
        grant_to(destination, key.key_id, BYSTANDER)
    assert error_code(error) == "NotFoundException"


def test_the_key_owner_revokes_a_grant_another_account_issued(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    key = seed.create_customer_key(double.url)
    add_statement(
        source, key.key_id, allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:CreateGrant")
    )
    grant_id = grant_to(destination, key.key_arn, BYSTANDER)

    source.kms.revoke_grant(KeyId=key.key_arn, GrantId=grant_id)

    assert grants(source, key.key_arn) == []


# --- PutKeyPolicy's lockout safety check -----------------------------------------------------


def put_policy(account: Account, key_id: str, policy: dict[str, Any], **extra: Any) -> None:
    account.kms.put_key_policy(
        KeyId=key_id, PolicyName="default", Policy=json.dumps(policy), **extra
    )


def key_policy(account: Account, key_id: str) -> dict[str, Any]:
    answer = account.kms.get_key_policy(KeyId=key_id, PolicyName="default")
    return dict(json.loads(answer["Policy"]))


def policy_of(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


@pytest.mark.parametrize("role_name", [None, "any", seed.KEY_ADMIN_ROLE])
def test_the_seed_key_policy_passes_the_lockout_check(
    double: AwsDouble, role_name: str | None
) -> None:
    key = seed.create_customer_key(double.url)
    credentials = (
        seed.FAKE_CREDENTIALS
        if role_name is None
        else seed.assume_account(double.url, SOURCE, role_name=role_name)
    )
    caller = Account(SOURCE, credentials, double.url)

    put_policy(caller, key.key_id, seed.default_key_policy())

    assert key_policy(caller, key.key_id) == seed.default_key_policy()


ROOT = {"AWS": f"arn:aws:iam::{SOURCE}:root"}


@pytest.mark.parametrize(
    "policy",
    [
        policy_of(allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:*")),
        policy_of(allow(ROOT, "kms:*", Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})),
        policy_of(allow(ROOT, ["kms:Describe*", "kms:Get*", "kms:CreateGrant"])),
        policy_of(allow(ROOT, "kms:*"), {**allow(ROOT, "kms:PutKeyPolicy"), "Effect": "Deny"}),
        policy_of(allow({"AWS": f"arn:aws:iam::{SOURCE}:role/{seed.KEY_ADMIN_ROLE}"}, "kms:*")),
        policy_of(),
    ],
    ids=[
        "other-account",
        "conditioned",
        "other-actions",
        "denied",
        "a-role-not-the-caller",
        "empty",
    ],
)
def test_put_key_policy_refuses_a_policy_that_locks_the_caller_out(
    double: AwsDouble, source: Account, policy: dict[str, Any]
) -> None:
    key = seed.create_customer_key(double.url)

    with pytest.raises(ClientError) as error:
        put_policy(source, key.key_id, policy)

    assert error_code(error) == "MalformedPolicyDocumentException"
    assert error.value.response["Error"]["Message"] == moto_ext.LOCKOUT_MESSAGE
    assert key_policy(source, key.key_id) == seed.default_key_policy()


@pytest.mark.parametrize(
    "policy",
    [
        policy_of(allow("*", "kms:*")),
        policy_of(allow({"AWS": SOURCE}, "kms:PutKeyPolicy")),
        policy_of(allow({"AWS": [f"arn:aws:iam::{DESTINATION}:root", ROOT["AWS"]]}, "kms:Put*")),
    ],
    ids=["unconditioned-star", "bare-account-id", "put-wildcard-in-a-list"],
)
def test_put_key_policy_accepts_policies_that_keep_the_caller(
    double: AwsDouble, source: Account, policy: dict[str, Any]
) -> None:
    key = seed.create_customer_key(double.url)

    put_policy(source, key.key_id, policy)

    assert key_policy(source, key.key_id) == policy


def test_a_role_caller_passes_when_the_policy_names_its_role(double: AwsDouble) -> None:
    key = seed.create_customer_key(double.url)
    admin = Account(
        SOURCE, seed.assume_account(double.url, SOURCE, role_name=seed.KEY_ADMIN_ROLE), double.url
    )
    other_role = Account(SOURCE, seed.assume_account(double.url, SOURCE), double.url)
    role_only = policy_of(
        allow({"AWS": f"arn:aws:iam::{SOURCE}:role/{seed.KEY_ADMIN_ROLE}"}, "kms:PutKeyPolicy")
    )

    for refused in (other_role, Account(SOURCE, seed.FAKE_CREDENTIALS, double.url)):
        with pytest.raises(ClientError) as error:
            put_policy(refused, key.key_id, role_only)
        assert error.value.response["Error"]["Message"] == moto_ext.LOCKOUT_MESSAGE
    put_policy(admin, key.key_id, role_only)

    assert key_policy(admin, key.key_id) == role_only


def test_bypassing_the_lockout_check_accepts_any_valid_policy(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    locked = policy_of(allow({"AWS": f"arn:aws:iam::{DESTINATION}:root"}, "kms:*"))

    put_policy(source, key.key_id, locked, BypassPolicyLockoutSafetyCheck=True)

    assert key_policy(source, key.key_id) == locked


def test_invalid_principals_are_refused_as_such_not_as_a_lockout(
    double: AwsDouble, source: Account
) -> None:
    double.set_unknown_accounts([UNKNOWN])
    key = seed.create_customer_key(double.url)

    with pytest.raises(ClientError) as error:
        put_policy(source, key.key_id, policy_of(allow({"AWS": UNKNOWN}, "kms:*")))

    assert error_code(error) == "MalformedPolicyDocumentException"
    assert error.value.response["Error"]["Message"] == moto_ext.INVALID_PRINCIPALS_MESSAGE


# --- STS AssumeRole: RoleSessionName and SourceIdentity --------------------------------------


def test_assume_role_answers_with_source_identity_and_the_log_keeps_it(
    double: AwsDouble, source: Account
) -> None:
    session_name = "amishare-" + "j" * 55
    assert len(session_name) == 64
    since = len(double.requests())

    answer = source.sts.assume_role(
        RoleArn=f"arn:aws:iam::{DESTINATION}:role/any",
        RoleSessionName=session_name,
        SourceIdentity="release-bot@example.com",
    )

    assert answer["SourceIdentity"] == "release-bot@example.com"
    assert answer["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{DESTINATION}:assumed-role/any/{session_name}"
    )
    (record,) = double.requests(since)
    assert record.params is not None
    assert record.params["RoleSessionName"] == session_name
    assert record.params["SourceIdentity"] == "release-bot@example.com"


def test_assume_role_without_source_identity_answers_without_it(source: Account) -> None:
    answer = source.sts.assume_role(
        RoleArn=f"arn:aws:iam::{DESTINATION}:role/any", RoleSessionName="plain"
    )

    assert "SourceIdentity" not in answer


@pytest.mark.parametrize(
    "request_",
    [
        {"RoleSessionName": "s" * 65},
        {"RoleSessionName": "has space"},
        {"RoleSessionName": "ok", "SourceIdentity": "i" * 65},
        {"RoleSessionName": "ok", "SourceIdentity": "not/allowed"},
    ],
    ids=["long-session-name", "session-name-pattern", "long-source-identity", "identity-pattern"],
)
def test_assume_role_refuses_invalid_session_names_and_source_identities(
    source: Account, request_: dict[str, str]
) -> None:
    with pytest.raises(ClientError) as error:
        source.sts.assume_role(RoleArn=f"arn:aws:iam::{DESTINATION}:role/any", **request_)
    assert error_code(error) == "ValidationError"


def test_sts_credentials_have_an_age_and_long_term_keys_none(double: AwsDouble) -> None:
    started = time.monotonic()
    credentials = seed.assume_account(double.url, DESTINATION)

    age = moto_ext.credentials_age(credentials.access_key_id)

    assert age is not None and 0 <= age <= time.monotonic() - started
    assert moto_ext.credentials_age(seed.FAKE_ACCESS_KEY_ID) is None


# --- Key policy size -------------------------------------------------------------------------


def padded_policy(account_id: str, size: int) -> str:
    policy = seed.default_key_policy(account_id)
    policy["Statement"][0]["Sid"] = ""
    padding = size - len(json.dumps(policy))
    policy["Statement"][0]["Sid"] = "x" * padding
    text = json.dumps(policy)
    assert len(text.encode()) == size
    return text


def test_put_key_policy_refuses_policy_over_32_kb(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)

    source.kms.put_key_policy(
        KeyId=key.key_id, PolicyName="default", Policy=padded_policy(SOURCE, 32768)
    )
    with pytest.raises(ClientError) as error:
        source.kms.put_key_policy(
            KeyId=key.key_id, PolicyName="default", Policy=padded_policy(SOURCE, 32769)
        )

    assert error_code(error) == "LimitExceededException"


# --- install() -------------------------------------------------------------------------------


def test_install_is_idempotent() -> None:
    moto_ext.install()
    moto_ext.install()

    assert moto_ext.is_installed()


def test_install_refuses_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_ext, "_installed", False)
    monkeypatch.setattr(moto, "__version__", "5.2.6")

    with pytest.raises(RuntimeError, match=r"moto==5\.2\.5"):
        moto_ext.install()


def test_an_assumed_role_key_acts_as_the_role_account_and_an_unknown_key_as_the_default(
    double: AwsDouble,
) -> None:
    credentials = seed.assume_account(double.url, DESTINATION)

    assert moto_ext.account_id_from(credentials.access_key_id) == DESTINATION
    assert moto_ext.account_id_from(credentials.access_key_id) == DESTINATION  # remembered
    assert moto_ext.account_id_from("AKIANEVERISSUED0000") == seed.SOURCE_ACCOUNT_ID


def test_a_deleted_access_key_no_longer_acts_as_its_account(double: AwsDouble) -> None:
    iam = seed.client("iam", double.url, REGION, seed.assume_account(double.url, BYSTANDER))
    iam.create_user(UserName="builder")
    key = iam.create_access_key(UserName="builder")["AccessKey"]["AccessKeyId"]
    assert moto_ext.account_id_from(key) == BYSTANDER

    iam.delete_access_key(UserName="builder", AccessKeyId=key)

    assert moto_ext.account_id_from(key) != BYSTANDER


def test_a_response_class_methods_are_listed_once_and_as_moto_lists_them(double: AwsDouble) -> None:
    listed = responses.method_names_from_class(KmsResponse)

    assert listed == method_names_from_class(KmsResponse)
    assert responses.method_names_from_class(KmsResponse) is listed


def test_a_deny_statement_applies_only_to_the_principals_it_names(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    add_statement(
        source,
        key.key_id,
        {
            "Sid": "BlockContractor",
            "Effect": "Deny",
            "Principal": {"AWS": f"arn:aws:iam::{BYSTANDER}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
    )

    assert source.kms.describe_key(KeyId=key.key_id)["KeyMetadata"]["Arn"] == key.key_arn

    add_statement(
        source,
        key.key_id,
        {
            "Sid": "BlockEveryone",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:Describe*",
            "Resource": "*",
        },
    )
    with pytest.raises(ClientError) as error:
        source.kms.describe_key(KeyId=key.key_id)
    assert error_code(error) == "AccessDeniedException"


def test_asymmetric_keys_still_sign_and_verify_with_their_private_key_built_on_use(
    double: AwsDouble, source: Account
) -> None:
    key_id = source.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"][
        "KeyId"
    ]
    signature = source.kms.sign(
        KeyId=key_id, Message=b"amishare", SigningAlgorithm="RSASSA_PSS_SHA_256"
    )["Signature"]

    verified = source.kms.verify(
        KeyId=key_id,
        Message=b"amishare",
        Signature=signature,
        SigningAlgorithm="RSASSA_PSS_SHA_256",
    )
    assert verified["SignatureValid"] is True
    assert source.kms.get_public_key(KeyId=key_id)["PublicKey"]


def test_a_public_image_is_seen_by_every_account(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Add": [{"Group": "all"}]}
    )

    assert image(destination, seeded.image_id)["ImageId"] == seeded.image_id
