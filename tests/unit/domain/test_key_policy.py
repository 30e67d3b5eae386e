"""Our key-policy statements: exactly six Sids in exactly one shape each; everything else is
someone else's and is kept as and where it was."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.domain.key_policy import (
    OUR_SIDS,
    KeyGrantee,
    KeyPolicyConflictError,
    grant_in_policy,
    grantees_in_policy,
    revoke_from_policy,
)
from app.domain.principals import Principal, account
from app.domain.types import PrincipalType

ORG = Principal(
    "arn:aws:organizations::111111111111:organization/o-abcdefghij", PrincipalType.ORGANIZATION
)
OU = Principal(
    "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdefghij",
    PrincipalType.ORGANIZATIONAL_UNIT,
)
ROOT_STATEMENT = {
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
    "Action": "kms:*",
    "Resource": "*",
}
LOOKALIKE = {
    "Sid": "AmiShareBlockContractor",
    "Effect": "Deny",
    "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def shared_with(*principals: Principal) -> dict[str, Any]:
    return grant_in_policy(policy(ROOT_STATEMENT), principals)


def test_grant_writes_two_statements_per_kind_and_names_each_principal() -> None:
    shared = shared_with(account("222222222222"), account("333333333333"), ORG, OU)

    sids = [s["Sid"] for s in shared["Statement"]]
    assert sids[0] == "Enable IAM User Permissions"
    assert set(sids[1:]) == OUR_SIDS
    assert grantees_in_policy(shared) == {
        KeyGrantee(PrincipalType.ACCOUNT, "222222222222"),
        KeyGrantee(PrincipalType.ACCOUNT, "333333333333"),
        KeyGrantee(PrincipalType.ORGANIZATION, "o-abcdefghij"),
        KeyGrantee(PrincipalType.ORGANIZATIONAL_UNIT, "o-abcdefghij/*/ou-ab12-cdefghij/*"),
    }


def test_statements_that_merely_start_like_ours_are_kept_in_place() -> None:
    start = policy(ROOT_STATEMENT, LOOKALIKE)

    shared = grant_in_policy(start, [account("222222222222")])
    revoked = revoke_from_policy(shared, [account("222222222222")])

    assert shared["Statement"][:2] == [ROOT_STATEMENT, LOOKALIKE]
    assert revoked == start


def test_our_statements_are_rewritten_where_they_stand() -> None:
    shared = shared_with(account("222222222222"))
    shared["Statement"].append(LOOKALIKE)

    again = grant_in_policy(shared, [account("333333333333")])

    assert [s["Sid"] for s in again["Statement"]] == [
        "Enable IAM User Permissions",
        "AmiShareAccounts",
        "AmiShareAccountsCreateGrant",
        "AmiShareBlockContractor",
    ]


def test_aws_rewriting_principals_is_read_by_meaning() -> None:
    shared = shared_with(account("222222222222"), account("333333333333"))
    for statement in shared["Statement"][1:]:
        statement["Principal"]["AWS"] = ["333333333333", "arn:aws:iam::222222222222:root"]
        statement["Action"] = (
            list(reversed(statement["Action"]))
            if isinstance(statement["Action"], list)
            else [statement["Action"]]
        )

    assert {g.value for g in grantees_in_policy(shared)} == {"222222222222", "333333333333"}


def _ours_changed(change: Any) -> dict[str, Any]:
    shared = shared_with(account("222222222222"))
    statement = shared["Statement"][1]
    change(statement)
    return shared


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(Effect="Deny"),
        lambda s: s.update(Condition={"StringEquals": {"kms:ViaService": "ec2.amazonaws.com"}}),
        lambda s: s.update(Principal={"AWS": "arn:aws:iam::222222222222:role/builder"}),
        lambda s: s.update(Action=["kms:Decrypt"]),
        lambda s: s.update(Action="kms:*"),
        lambda s: s.update(Resource="arn:aws:kms:us-east-1:123456789012:key/x"),
        lambda s: s.update(NotAction="kms:Encrypt"),
        lambda s: s.update(Principal="*"),
    ],
    ids=[
        "deny",
        "added-condition",
        "role-principal",
        "fewer-actions",
        "all-actions",
        "other-resource",
        "not-action",
        "everyone",
    ],
)
def test_a_statement_with_our_sid_in_another_shape_is_a_conflict(change: Any) -> None:
    changed = _ours_changed(change)

    with pytest.raises(KeyPolicyConflictError) as conflict:
        grantees_in_policy(changed)
    assert conflict.value.sid == "AmiShareAccounts"
    with pytest.raises(KeyPolicyConflictError):
        grant_in_policy(changed, [account("333333333333")])


def test_a_create_grant_statement_without_its_aws_resource_condition_is_a_conflict() -> None:
    shared = shared_with(account("222222222222"))
    del shared["Statement"][2]["Condition"]

    with pytest.raises(KeyPolicyConflictError) as conflict:
        grantees_in_policy(shared)
    assert conflict.value.sid == "AmiShareAccountsCreateGrant"


def test_one_of_a_pair_alone_or_disagreeing_is_a_conflict() -> None:
    alone = shared_with(account("222222222222"))
    del alone["Statement"][2]
    disagreeing = shared_with(account("222222222222"), account("333333333333"))
    disagreeing["Statement"][2]["Principal"] = {"AWS": "arn:aws:iam::222222222222:root"}
    twice = shared_with(account("222222222222"))
    twice["Statement"].append(copy.deepcopy(twice["Statement"][1]))

    for conflicted in (alone, disagreeing, twice):
        with pytest.raises(KeyPolicyConflictError):
            grantees_in_policy(conflicted)


def test_a_deny_is_never_read_as_a_grantee() -> None:
    deny = {**LOOKALIKE, "Sid": "AmiShareAccounts"}

    with pytest.raises(KeyPolicyConflictError):
        grantees_in_policy(policy(ROOT_STATEMENT, deny))
    assert grantees_in_policy(policy(ROOT_STATEMENT, LOOKALIKE)) == set()


def test_root_arns_carry_the_partition_of_the_region() -> None:
    shared = grant_in_policy(policy(ROOT_STATEMENT), [account("222222222222")], "aws-cn")

    assert shared["Statement"][1]["Principal"] == {"AWS": "arn:aws-cn:iam::222222222222:root"}
    assert grantees_in_policy(shared) == {KeyGrantee(PrincipalType.ACCOUNT, "222222222222")}


def test_revoking_the_last_grantee_removes_our_statements() -> None:
    shared = shared_with(account("222222222222"), ORG)

    revoked = revoke_from_policy(shared, [account("222222222222"), ORG])

    assert revoked == policy(ROOT_STATEMENT)
