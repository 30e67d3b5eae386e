"""The `AmiShare…` statements of a KMS key policy (API.md, "What lands on AWS").

Pure functions over the policy document: merge destinations in, take them out, and leave every
statement that is not ours exactly as it was. Principals are compared by meaning, not by text,
because AWS may rewrite them (an account ID becomes its root ARN, lists are reordered).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.domain.principals import Principal
from app.domain.types import PrincipalType

KEY_POLICY_MAX_BYTES = 32 * 1024
SID_PREFIX = "AmiShare"
DESTINATION_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"]
GRANT_CONDITION = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
_ROOT_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):root$")

Policy = dict[str, Any]
Statement = dict[str, Any]


def parse_policy(text: str) -> Policy:
    policy = json.loads(text)
    if not isinstance(policy, dict):
        raise ValueError("a key policy is a JSON object")
    return policy


def render_policy(policy: Policy) -> str:
    return json.dumps(policy, separators=(",", ":"))


def policy_size(policy: Policy) -> int:
    return len(render_policy(policy).encode())


def _is_ours(statement: Statement) -> bool:
    return str(statement.get("Sid", "")).startswith(SID_PREFIX)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _account_of(aws_principal: str) -> str | None:
    if re.fullmatch(r"\d{12}", aws_principal):
        return aws_principal
    match = _ROOT_ARN.match(aws_principal)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True, order=True)
class KeyGrantee:
    """Who an `AmiShare` statement names: an account ID, an org ID (o-…) or an OU path."""

    type: PrincipalType
    value: str


def grantee_of(principal: Principal) -> KeyGrantee:
    if principal.type is PrincipalType.ORGANIZATION:
        return KeyGrantee(principal.type, principal.organization_id or principal.value)
    if principal.type is PrincipalType.ORGANIZATIONAL_UNIT:
        return KeyGrantee(principal.type, principal.org_path or principal.value)
    return KeyGrantee(principal.type, principal.value)


def grantees_in_policy(policy: Policy) -> set[KeyGrantee]:
    """The destinations that the `AmiShare` statements give access to now."""
    found: set[KeyGrantee] = set()
    for statement in _as_list(policy.get("Statement")):
        if not isinstance(statement, dict) or not _is_ours(statement):
            continue
        principal = statement.get("Principal")
        if isinstance(principal, dict):
            for value in _as_list(principal.get("AWS")):
                account_id = _account_of(str(value))
                if account_id:
                    found.add(KeyGrantee(PrincipalType.ACCOUNT, account_id))
        condition = statement.get("Condition") or {}
        for org_id in _as_list((condition.get("StringEquals") or {}).get("aws:PrincipalOrgID")):
            found.add(KeyGrantee(PrincipalType.ORGANIZATION, str(org_id)))
        paths = (condition.get("ForAnyValue:StringLike") or {}).get("aws:PrincipalOrgPaths")
        for path in _as_list(paths):
            found.add(KeyGrantee(PrincipalType.ORGANIZATIONAL_UNIT, str(path)))
    return found


def _values(grantees: set[KeyGrantee], kind: PrincipalType) -> list[str]:
    return sorted(g.value for g in grantees if g.type is kind)


def _our_statements(grantees: set[KeyGrantee]) -> list[Statement]:
    """The statements that give exactly `grantees` what a destination needs on the key."""
    accounts = [f"arn:aws:iam::{a}:root" for a in _values(grantees, PrincipalType.ACCOUNT)]
    org_ids = _values(grantees, PrincipalType.ORGANIZATION)
    paths = _values(grantees, PrincipalType.ORGANIZATIONAL_UNIT)
    statements: list[Statement] = []
    if accounts:
        who = {"AWS": accounts[0] if len(accounts) == 1 else accounts}
        statements += _use_and_grant("AmiShareAccounts", who, {})
    if org_ids:
        condition = {"StringEquals": {"aws:PrincipalOrgID": org_ids}}
        statements += _use_and_grant("AmiShareOrganizations", "*", condition)
    if paths:
        condition = {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": paths}}
        statements += _use_and_grant("AmiShareOrganizationalUnits", "*", condition)
    return statements


def _use_and_grant(sid: str, who: Any, condition: dict[str, Any]) -> list[Statement]:
    use: Statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": who,
        "Action": DESTINATION_ACTIONS,
        "Resource": "*",
    }
    if condition:
        use["Condition"] = condition
    grant: Statement = {
        "Sid": f"{sid}CreateGrant",
        "Effect": "Allow",
        "Principal": who,
        "Action": "kms:CreateGrant",
        "Resource": "*",
        "Condition": {**condition, **GRANT_CONDITION},
    }
    return [use, grant]


def with_grantees(policy: Policy, grantees: set[KeyGrantee]) -> Policy:
    """The policy with our statements replaced by ones for exactly `grantees`."""
    others = [s for s in _as_list(policy.get("Statement")) if not _is_ours(s)]
    return {**policy, "Statement": others + _our_statements(grantees)}


def grant_in_policy(policy: Policy, add: Iterable[Principal]) -> Policy:
    return with_grantees(policy, grantees_in_policy(policy) | {grantee_of(p) for p in add})


def revoke_from_policy(policy: Policy, remove: Iterable[Principal]) -> Policy:
    return with_grantees(policy, grantees_in_policy(policy) - {grantee_of(p) for p in remove})
