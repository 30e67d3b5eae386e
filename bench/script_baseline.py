"""The per-account script: the manual procedure as a user would script it, with boto3,
sequentially per destination (get and put the key policy, one snapshot permission per snapshot,
the launch permission, assume the destination role and describe the image)."""

from __future__ import annotations

import json
import time
from typing import Any

from app.sandbox import seed
from bench.procs import DESTINATION_ROLE

REGION = "us-east-1"


def share_like_a_script(
    endpoint: str, image_id: str, snapshot_ids: list[str], key_id: str, accounts: list[str]
) -> float:
    """Seconds to share with every account, one after another."""
    ec2 = seed.ec2_client(endpoint, REGION)
    kms = seed.kms_client(endpoint, REGION)
    sts = seed.sts_client(endpoint, REGION)
    started = time.perf_counter()
    for account in accounts:
        _grant_key(kms, key_id, account)
        for snapshot_id in snapshot_ids:
            ec2.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                OperationType="add",
                UserIds=[account],
            )
        ec2.modify_image_attribute(
            ImageId=image_id, LaunchPermission={"Add": [{"UserId": account}]}
        )
        role = f"arn:aws:iam::{account}:role/{DESTINATION_ROLE}"
        issued = sts.assume_role(RoleArn=role, RoleSessionName="script")["Credentials"]
        credentials = seed.Credentials(
            issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
        )
        seed.ec2_client(endpoint, REGION, credentials).describe_images(ImageIds=[image_id])
    return time.perf_counter() - started


def _grant_key(kms: Any, key_id: str, account: str) -> None:
    """A careful script: one statement whose principal list grows (not one per account)."""
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    shared = next((s for s in policy["Statement"] if s.get("Sid") == "ScriptShare"), None)
    if shared is None:
        shared = {
            "Sid": "ScriptShare",
            "Effect": "Allow",
            "Principal": {"AWS": []},
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:CreateGrant"],
            "Resource": "*",
        }
        policy["Statement"].append(shared)
    shared["Principal"]["AWS"].append(f"arn:aws:iam::{account}:root")
    text = json.dumps(policy, separators=(",", ":"))
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=text)
