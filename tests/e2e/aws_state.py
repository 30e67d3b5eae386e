"""Reading what landed on the AWS double, the way anyone could check it (docs/api.md)."""

from __future__ import annotations

import json
from typing import Any

from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from tests.conftest import REGION


def launch_permission_accounts(double: AwsDouble, image_id: str) -> set[str]:
    ec2 = seed.ec2_client(double.url, REGION)
    answer = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
    return {p["UserId"] for p in answer.get("LaunchPermissions", []) if "UserId" in p}


def snapshot_accounts(double: AwsDouble, snapshot_id: str) -> set[str]:
    ec2 = seed.ec2_client(double.url, REGION)
    answer = ec2.describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return {p["UserId"] for p in answer.get("CreateVolumePermissions", []) if "UserId" in p}


def key_policy(double: AwsDouble, key_id: str) -> dict[str, Any]:
    kms = seed.kms_client(double.url, REGION)
    policy: dict[str, Any] = json.loads(
        kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    )
    return policy


def policy_accounts(policy: dict[str, Any]) -> set[str]:
    """Accounts named by the AmiShare statements (both of them must name the same set)."""
    per_statement = []
    for statement in policy["Statement"]:
        if statement.get("Sid", "").startswith("AmiShareAccounts"):
            principals = statement["Principal"]["AWS"]
            principals = [principals] if isinstance(principals, str) else principals
            per_statement.append({p.split(":")[4] for p in principals})
    if not per_statement:
        return set()
    assert all(s == per_statement[0] for s in per_statement)
    return per_statement[0]


def other_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if not s.get("Sid", "").startswith("AmiShare")]


def grants_by_account(double: AwsDouble, key_id: str) -> dict[str, list[dict[str, Any]]]:
    kms = seed.kms_client(double.url, REGION)
    grants = kms.list_grants(KeyId=key_id)["Grants"]
    found: dict[str, list[dict[str, Any]]] = {}
    for grant in grants:
        account = grant["GranteePrincipal"].split(":")[4]
        found.setdefault(account, []).append(grant)
    return found


def destination_sees_image(double: AwsDouble, account_id: str, image_id: str) -> bool:
    credentials = seed.assume_account(double.url, account_id)
    ec2 = seed.ec2_client(double.url, REGION, credentials)
    return bool(ec2.describe_images(ImageIds=[image_id])["Images"])


def mutating_calls(double: AwsDouble, since: int) -> list[str]:
    return [
        f"{r.service}:{r.action}" for r in double.requests(since) if r.mutating and r.status < 400
    ]
