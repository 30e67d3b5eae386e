"""The IAM policy identities in a destination account need, for the images a job shares: to
find and launch them (and to copy them, with `copy`). Key policies and grants on the source's
keys let the destination account in; its own identities still need this in their IAM policy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KEY_USE = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
FOR_AWS_RESOURCES = {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def destination_policy(key_arns: Iterable[str], *, copies: bool) -> dict[str, Any]:
    """An IAM policy document, ready for `aws iam create-policy --policy-document`."""
    keys = sorted(set(key_arns))
    statements: list[dict[str, Any]] = [
        {
            "Sid": "FindTheSharedImages",
            "Effect": "Allow",
            "Action": "ec2:DescribeImages",
            "Resource": "*",
        }
    ]
    if keys:
        statements += [
            {"Sid": "UseTheirKeys", "Effect": "Allow", "Action": KEY_USE, "Resource": keys},
            {
                "Sid": "LetAwsServicesUseTheirKeys",
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": keys,
                "Condition": FOR_AWS_RESOURCES,
            },
        ]
    if copies:
        statements.append(
            {
                "Sid": "CopyTheSharedImages",
                "Effect": "Allow",
                "Action": ["ec2:CopyImage", "ec2:CreateTags"],
                "Resource": "*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
