"""The service's own statements in a KMS key policy (docs/aws.md, "Key policies").

The service writes exactly six statements, each with a fixed `Sid` and a fixed shape: for
accounts, organizations and OUs, one statement with the actions a destination needs to launch and
copy, and one with `kms:CreateGrant` limited to AWS resources. Only statements with those exact
Sids are ours; one of them in any other shape (a Deny, an added condition, another principal or
action) was written by a person, and the job stops before changing anything rather than
overwrite it. Every other statement is kept exactly where and as it was.

Principals are compared by meaning, not by text, because AWS may rewrite them (an account ID
becomes its root ARN, a single value becomes a list, lists are reordered).
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
DESTINATION_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"]
GRANT_ACTION = "kms:CreateGrant"
GRANT_CONDITION = {"Bool": {"kms:GrantIsForAWSResource": "true"}}
_ROOT_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):root$")
_ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
_OU_PATH = re.compile(r"^o-[a-z0-9]{10,32}/\*/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}/\*$")

Policy = dict[str, Any]
Statement = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one kind of destination is named in our statements."""

    type: PrincipalType
    sid: str
    operator: str | None  # condition operator naming org IDs or OU paths; None for accounts
    condition_key: str | None
    value: re.Pattern[str]

    @property
    def grant_sid(self) -> str:
        return f"{self.sid}CreateGrant"


_KINDS = (
    _Kind(PrincipalType.ACCOUNT, "AmiShareAccounts", None, None, re.compile(r"^\d{12}$")),
    _Kind(
        PrincipalType.ORGANIZATION,
        "AmiShareOrganizations",
        "StringEquals",
        "aws:PrincipalOrgID",
        _ORG_ID,
    ),
    _Kind(
        PrincipalType.ORGANIZATIONAL_UNIT,
        "AmiShareOrganizationalUnits",
        "ForAnyValue:StringLike",
        "aws:PrincipalOrgPaths",
        _OU_PATH,
    ),
)
OUR_SIDS = frozenset(sid for kind in _KINDS for sid in (kind.sid, kind.grant_sid))


class KeyPolicyConflictError(ValueError):
    """A statement with one of our Sids is not in the shape we write: someone else's."""

    def __init__(self, sid: str, reason: str) -> None:
        super().__init__(f"statement '{sid}' {reason}")
        self.sid = sid
        self.reason = reason


def parse_policy(text: str) -> Policy:
    policy = json.loads(text)
    if not isinstance(policy, dict):
        raise ValueError("a key policy is a JSON object")
    return policy


def render_policy(policy: Policy) -> str:
    return json.dumps(policy, separators=(",", ":"))


def policy_size(policy: Policy) -> int:
    return len(render_policy(policy).encode())


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statements(policy: Policy) -> list[Any]:
    return _as_list(policy.get("Statement"))


def _sid(statement: Any) -> str | None:
    return statement.get("Sid") if isinstance(statement, dict) else None


def _account_of(aws_principal: str) -> str | None:
    if re.fullmatch(r"\d{12}", aws_principal):
        return aws_principal
    match = _ROOT_ARN.match(aws_principal)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True, order=True)
class KeyGrantee:
    """Who one of our statements names: an account ID, an org ID (o-…) or an OU path."""

    type: PrincipalType
    value: str


def grantee_of(principal: Principal) -> KeyGrantee:
    if principal.type is PrincipalType.ORGANIZATION:
        return KeyGrantee(principal.type, principal.organization_id or principal.value)
    if principal.type is PrincipalType.ORGANIZATIONAL_UNIT:
        return KeyGrantee(principal.type, principal.org_path or principal.value)
    return KeyGrantee(principal.type, principal.value)


def _lowered(values: Iterable[Any]) -> set[str]:
    return {str(v).lower() for v in values}


def _check_common(statement: Statement, sid: str) -> None:
    unexpected = set(statement) - {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}
    if unexpected:
        raise KeyPolicyConflictError(sid, f"has {', '.join(sorted(unexpected))}")
    if statement.get("Effect") != "Allow":
        raise KeyPolicyConflictError(sid, f"has Effect {statement.get('Effect')!r}, not 'Allow'")
    if _as_list(statement.get("Resource")) != ["*"]:
        raise KeyPolicyConflictError(sid, "names a Resource other than '*'")


def _check_actions(statement: Statement, sid: str, wanted: Iterable[str]) -> None:
    if _lowered(_as_list(statement.get("Action"))) != _lowered(wanted):
        raise KeyPolicyConflictError(sid, "has other actions than the ones amishare writes")


def _accounts_named(statement: Statement, sid: str) -> set[str]:
    principal = statement.get("Principal")
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        raise KeyPolicyConflictError(sid, "names principals other than AWS accounts")
    accounts = set()
    for value in _as_list(principal["AWS"]):
        account_id = _account_of(str(value))
        if account_id is None:
            raise KeyPolicyConflictError(sid, f"names {value!r}, not an account's root")
        accounts.add(account_id)
    if not accounts:
        raise KeyPolicyConflictError(sid, "names no principal")
    return accounts


def _is_everyone(principal: Any) -> bool:
    return bool(principal == "*" or principal in ({"AWS": "*"}, {"AWS": ["*"]}))


def _condition_values(condition: dict[str, Any], kind: _Kind, sid: str) -> set[str]:
    assert kind.operator is not None and kind.condition_key is not None
    block = condition.get(kind.operator)
    if not isinstance(block, dict) or set(block) != {kind.condition_key}:
        raise KeyPolicyConflictError(sid, f"has a condition other than {kind.condition_key}")
    values = {str(v) for v in _as_list(block[kind.condition_key])}
    if not values or not all(kind.value.match(v) for v in values):
        raise KeyPolicyConflictError(sid, f"has {kind.condition_key} values amishare never writes")
    return values


def _grantees_of(statement: Statement, kind: _Kind, *, grant: bool) -> set[str]:
    """The values one of our statements names, or KeyPolicyConflictError if it is not ours."""
    sid = kind.grant_sid if grant else kind.sid
    _check_common(statement, sid)
    _check_actions(statement, sid, [GRANT_ACTION] if grant else DESTINATION_ACTIONS)
    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict):
        raise KeyPolicyConflictError(sid, "has a malformed Condition")
    if grant:
        flag = condition.get("Bool")
        if flag != {"kms:GrantIsForAWSResource": "true"} and flag != {
            "kms:GrantIsForAWSResource": ["true"]
        }:
            raise KeyPolicyConflictError(sid, "does not limit CreateGrant to AWS resources")
        condition = {k: v for k, v in condition.items() if k != "Bool"}
    if kind.operator is None:
        if condition:
            raise KeyPolicyConflictError(sid, "has a condition amishare never writes")
        return _accounts_named(statement, sid)
    if not _is_everyone(statement.get("Principal")):
        raise KeyPolicyConflictError(sid, "names a principal other than '*'")
    if set(condition) != {kind.operator}:
        raise KeyPolicyConflictError(sid, "has a condition amishare never writes")
    return _condition_values(condition, kind, sid)


def grantees_in_policy(policy: Policy) -> set[KeyGrantee]:
    """The destinations our statements give access to now.

    Raises KeyPolicyConflictError when a statement with one of our Sids is not exactly in our
    shape, or when one Sid appears twice, or the two statements of one kind disagree.
    """
    by_sid: dict[str, Statement] = {}
    for statement in _statements(policy):
        sid = _sid(statement)
        if sid in OUR_SIDS:
            if sid in by_sid:
                raise KeyPolicyConflictError(sid, "appears more than once")
            by_sid[sid] = statement
    found: set[KeyGrantee] = set()
    for kind in _KINDS:
        use, grant = by_sid.get(kind.sid), by_sid.get(kind.grant_sid)
        if use is None and grant is None:
            continue
        if use is None or grant is None:
            missing = kind.sid if use is None else kind.grant_sid
            raise KeyPolicyConflictError(missing, "is missing while its pair is present")
        named = _grantees_of(use, kind, grant=False)
        if _grantees_of(grant, kind, grant=True) != named:
            raise KeyPolicyConflictError(kind.grant_sid, f"names others than {kind.sid}")
        found |= {KeyGrantee(kind.type, value) for value in named}
    return found


def _our_statements(kind: _Kind, values: list[str], partition: str) -> tuple[Statement, Statement]:
    """The two statements that give exactly `values` of one kind what a destination needs."""
    condition: dict[str, Any] = {}
    who: Any = "*"
    if kind.operator is None:
        accounts = [f"arn:{partition}:iam::{a}:root" for a in values]
        who = {"AWS": accounts[0] if len(accounts) == 1 else accounts}
    else:
        assert kind.condition_key is not None
        condition = {kind.operator: {kind.condition_key: values}}
    use: Statement = {
        "Sid": kind.sid,
        "Effect": "Allow",
        "Principal": who,
        "Action": DESTINATION_ACTIONS,
        "Resource": "*",
    }
    if condition:
        use["Condition"] = condition
    grant: Statement = {
        "Sid": kind.grant_sid,
        "Effect": "Allow",
        "Principal": who,
        "Action": GRANT_ACTION,
        "Resource": "*",
        "Condition": {**condition, **GRANT_CONDITION},
    }
    return use, grant


def with_grantees(policy: Policy, grantees: set[KeyGrantee], partition: str = "aws") -> Policy:
    """The policy with our statements naming exactly `grantees`: each rewritten where it stands,
    new ones appended, emptied ones dropped; every other statement kept as and where it was."""
    replacement: dict[str, Statement | None] = {}
    for kind in _KINDS:
        values = sorted(g.value for g in grantees if g.type is kind.type)
        if values:
            replacement[kind.sid], replacement[kind.grant_sid] = _our_statements(
                kind, values, partition
            )
        else:
            replacement[kind.sid] = replacement[kind.grant_sid] = None
    statements: list[Any] = []
    for statement in _statements(policy):
        sid = _sid(statement)
        if sid in OUR_SIDS:
            assert sid is not None
            new = replacement.pop(sid, None)
            if new is not None:
                statements.append(new)
        else:
            statements.append(statement)
    statements += [s for s in replacement.values() if s is not None]
    return {**policy, "Statement": statements}


def grant_in_policy(policy: Policy, add: Iterable[Principal], partition: str = "aws") -> Policy:
    return with_grantees(
        policy, grantees_in_policy(policy) | {grantee_of(p) for p in add}, partition
    )


def revoke_from_policy(
    policy: Policy, remove: Iterable[Principal], partition: str = "aws"
) -> Policy:
    return with_grantees(
        policy, grantees_in_policy(policy) - {grantee_of(p) for p in remove}, partition
    )
