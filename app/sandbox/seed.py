"""Test and demo fixtures in the AWS double, created with sync boto3 against its endpoint.

Everything is created in the source account (moto's default account, 123456789012, reached with
the fake `testing` credentials) unless other `credentials` are passed; `assume_account()` gives
credentials that act as another account.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_sts import STSClient

DEFAULT_REGION = "us-east-1"
SOURCE_ACCOUNT_ID = "123456789012"  # moto's default account (MOTO_ACCOUNT_ID left unset)
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a fake credential for the local double
ROOT_DEVICE = "/dev/xvda"
KEY_ADMIN_ROLE = "KeyAdmin"

_client_lock = threading.Lock()


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


FAKE_CREDENTIALS = Credentials(FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY)


@dataclass(frozen=True)
class SeededKey:
    key_id: str
    key_arn: str


@dataclass(frozen=True)
class SeededImage:
    image_id: str
    snapshot_ids: tuple[str, ...]
    key_arn: str | None  # the KMS key of its snapshots; None when unencrypted/instance-store
    root_device_type: str = "ebs"


@functools.cache
def _shared_session() -> boto3.Session:
    # One session for every client: its loader parses each service model once (ec2's is big).
    return boto3.Session(region_name=DEFAULT_REGION)


def client_options(
    endpoint_url: str,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
    config: Config | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `boto3.Session.client` that reach the double as `credentials`."""
    return {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": credentials.access_key_id,
        "aws_secret_access_key": credentials.secret_access_key,
        "aws_session_token": credentials.session_token,
        "config": config,
    }


def client(
    service: str,
    endpoint_url: str,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
    config: Config | None = None,
) -> Any:
    """A sync boto3 client for any service on the double (Any: the service is a runtime value)."""
    options = client_options(endpoint_url, region, credentials, config)
    with _client_lock:
        factory: Any = _shared_session().client
        return factory(service, **options)


def ec2_client(
    endpoint_url: str, region: str = DEFAULT_REGION, credentials: Credentials = FAKE_CREDENTIALS
) -> EC2Client:
    typed: EC2Client = client("ec2", endpoint_url, region, credentials)
    return typed


def kms_client(
    endpoint_url: str, region: str = DEFAULT_REGION, credentials: Credentials = FAKE_CREDENTIALS
) -> KMSClient:
    typed: KMSClient = client("kms", endpoint_url, region, credentials)
    return typed


def sts_client(
    endpoint_url: str, region: str = DEFAULT_REGION, credentials: Credentials = FAKE_CREDENTIALS
) -> STSClient:
    typed: STSClient = client("sts", endpoint_url, region, credentials)
    return typed


def assume_account(
    endpoint_url: str, account_id: str, role_name: str = "any", region: str = DEFAULT_REGION
) -> Credentials:
    """Credentials acting as `account_id` (STS AssumeRole into arn:aws:iam::<acct>:role/<name>)."""
    answer = sts_client(endpoint_url, region).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}", RoleSessionName="amishare-seed"
    )
    creds = answer["Credentials"]
    return Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


def default_key_policy(account_id: str = SOURCE_ACCOUNT_ID) -> dict[str, Any]:
    """AWS's default key policy (account root may do everything) plus a key-admin statement."""
    return {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "Allow access for Key Administrators",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account_id}:role/{KEY_ADMIN_ROLE}"},
                "Action": [
                    "kms:Create*",
                    "kms:Describe*",
                    "kms:Enable*",
                    "kms:List*",
                    "kms:Put*",
                    "kms:Update*",
                    "kms:Revoke*",
                    "kms:Disable*",
                    "kms:Get*",
                    "kms:Delete*",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:ScheduleKeyDeletion",
                    "kms:CancelKeyDeletion",
                ],
                "Resource": "*",
            },
        ],
    }


def create_customer_key(
    endpoint_url: str,
    description: str = "amishare test key",
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
    account_id: str = SOURCE_ACCOUNT_ID,
) -> SeededKey:
    """A customer-managed symmetric key with the realistic default key policy."""
    metadata = kms_client(endpoint_url, region, credentials).create_key(
        Description=description,
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
        Policy=json.dumps(default_key_policy(account_id)),
    )["KeyMetadata"]
    return SeededKey(key_id=metadata["KeyId"], key_arn=metadata["Arn"])


def _device_name(index: int) -> str:
    return ROOT_DEVICE if index == 0 else f"/dev/sd{chr(ord('b') + index - 1)}"


def _snapshot(ec2: EC2Client, region: str, encryption: dict[str, Any]) -> tuple[str, str | None]:
    volume = ec2.create_volume(Size=8, AvailabilityZone=f"{region}a", **encryption)
    snapshot = ec2.create_snapshot(VolumeId=volume["VolumeId"], Description="amishare seed")
    ec2.delete_volume(VolumeId=volume["VolumeId"])
    return snapshot["SnapshotId"], snapshot.get("KmsKeyId")


def _register(ec2: EC2Client, mappings: list[Any], name: str | None) -> str:
    answer = ec2.register_image(
        Name=name or f"amishare-test-{uuid.uuid4().hex[:8]}",
        Architecture="x86_64",
        VirtualizationType="hvm",
        RootDeviceName=ROOT_DEVICE,
        BlockDeviceMappings=mappings,
    )
    return answer["ImageId"]


def _ebs_image(
    endpoint_url: str,
    encryption: dict[str, Any],
    snapshot_count: int,
    name: str | None,
    region: str,
    credentials: Credentials,
) -> SeededImage:
    ec2 = ec2_client(endpoint_url, region, credentials)
    snapshots = [_snapshot(ec2, region, encryption) for _ in range(snapshot_count)]
    mappings: list[Any] = [
        {"DeviceName": _device_name(i), "Ebs": {"SnapshotId": snapshot_id}}
        for i, (snapshot_id, _) in enumerate(snapshots)
    ]
    image_id = _register(ec2, mappings, name)
    return SeededImage(image_id, tuple(s for s, _ in snapshots), snapshots[0][1])


def create_encrypted_image(
    endpoint_url: str,
    key_id: str,
    snapshot_count: int = 1,
    name: str | None = None,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> SeededImage:
    """An EBS AMI whose snapshots are all encrypted with `key_id` (key id, ARN or alias)."""
    encryption = {"Encrypted": True, "KmsKeyId": key_id}
    return _ebs_image(endpoint_url, encryption, snapshot_count, name, region, credentials)


def create_image_under_keys(
    endpoint_url: str,
    key_ids: list[str],
    name: str | None = None,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> SeededImage:
    """An EBS AMI with one snapshot per key in `key_ids`, each encrypted with its key."""
    ec2 = ec2_client(endpoint_url, region, credentials)
    snapshots = [_snapshot(ec2, region, {"Encrypted": True, "KmsKeyId": k}) for k in key_ids]
    mappings: list[Any] = [
        {"DeviceName": _device_name(i), "Ebs": {"SnapshotId": snapshot_id}}
        for i, (snapshot_id, _) in enumerate(snapshots)
    ]
    image_id = _register(ec2, mappings, name)
    return SeededImage(image_id, tuple(s for s, _ in snapshots), snapshots[0][1])


def create_aws_managed_key_image(
    endpoint_url: str,
    snapshot_count: int = 1,
    name: str | None = None,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> SeededImage:
    """An EBS AMI encrypted with the AWS managed key `alias/aws/ebs` (which cannot be shared)."""
    encryption = {"Encrypted": True, "KmsKeyId": "alias/aws/ebs"}
    return _ebs_image(endpoint_url, encryption, snapshot_count, name, region, credentials)


def create_unencrypted_image(
    endpoint_url: str,
    snapshot_count: int = 1,
    name: str | None = None,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> SeededImage:
    """An EBS AMI with unencrypted snapshots."""
    return _ebs_image(endpoint_url, {}, snapshot_count, name, region, credentials)


def create_instance_store_image(
    endpoint_url: str,
    name: str | None = None,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> SeededImage:
    """An instance-store AMI (RootDeviceType `instance-store`, no snapshots)."""
    ec2 = ec2_client(endpoint_url, region, credentials)
    mappings: list[Any] = [{"DeviceName": ROOT_DEVICE, "VirtualName": "ephemeral0"}]
    image_id = _register(ec2, mappings, name)
    return SeededImage(image_id, (), None, root_device_type="instance-store")


COPY_GRANT_OPERATIONS = [
    "Decrypt",
    "DescribeKey",
    "CreateGrant",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
]


def create_destination_key(
    endpoint_url: str,
    account_id: str,
    alias: str,
    region: str = DEFAULT_REGION,
    credentials: Credentials | None = None,
) -> SeededKey:
    """A customer-managed key in `account_id` (acting as it unless `credentials` are given),
    with the realistic default key policy and the alias `alias` (`alias/` added if missing):
    e.g. a destination's own key for the copies it makes."""
    acting = credentials or assume_account(endpoint_url, account_id, region=region)
    key = create_customer_key(endpoint_url, f"{alias} key", region, acting, account_id)
    name = alias if alias.startswith("alias/") else f"alias/{alias}"
    kms_client(endpoint_url, region, acting).create_alias(AliasName=name, TargetKeyId=key.key_id)
    return key


def tag_image(
    endpoint_url: str,
    image_id: str,
    tags: Mapping[str, str],
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
) -> None:
    """Tag an image (as the account of `credentials`: tags are each account's own)."""
    ec2_client(endpoint_url, region, credentials).create_tags(
        Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )


def share_for_copy(
    endpoint_url: str,
    image: SeededImage,
    account_id: str,
    region: str = DEFAULT_REGION,
    credentials: Credentials = FAKE_CREDENTIALS,
    key_access: Literal["grant", "policy", "none"] = "grant",
) -> None:
    """Everything `account_id` needs to copy `image`: launch permission, createVolumePermission on
    every snapshot, and on every snapshot key a grant of COPY_GRANT_OPERATIONS (`grant`), key
    policy statements like the service's (`policy`: CreateGrant only for AWS resources), or
    nothing (`none`)."""
    ec2 = ec2_client(endpoint_url, region, credentials)
    ec2.modify_image_attribute(
        ImageId=image.image_id, LaunchPermission={"Add": [{"UserId": account_id}]}
    )
    key_arns: set[str] = set()
    for snapshot_id in image.snapshot_ids:
        ec2.modify_snapshot_attribute(
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            CreateVolumePermission={"Add": [{"UserId": account_id}]},
        )
        described = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
        if described.get("KmsKeyId"):
            key_arns.add(described["KmsKeyId"])
    kms = kms_client(endpoint_url, region, credentials)
    for key_arn in sorted(key_arns):
        if key_access == "grant":
            kms.create_grant(
                KeyId=key_arn,
                GranteePrincipal=f"arn:aws:iam::{account_id}:root",
                Operations=COPY_GRANT_OPERATIONS,  # type: ignore[arg-type]
                Name=f"amishare-copy-{account_id}",
            )
        elif key_access == "policy":
            _allow_copies_in_policy(kms, key_arn, account_id)


def _allow_copies_in_policy(kms: KMSClient, key_arn: str, account_id: str) -> None:
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    principal = {"AWS": f"arn:aws:iam::{account_id}:root"}
    policy["Statement"] += [
        {
            "Sid": f"CopyUse{account_id}",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
            "Resource": "*",
        },
        {
            "Sid": f"CopyCreateGrant{account_id}",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
