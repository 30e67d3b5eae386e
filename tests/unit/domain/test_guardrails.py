"""Guardrail entries are parsed into parts and compared with parsed principals: no text pattern
can admit more than the accounts, organizations and OUs it names."""

from __future__ import annotations

import pytest

from app.domain.guardrails import (
    ANY_DESTINATION,
    ANY_SOURCE,
    DestinationGuardrail,
    JobGuardrails,
    SourceGuardrail,
)
from app.domain.principals import Principal, account
from app.domain.types import PrincipalType

MGMT = "111111111111"
ORG_ID = "o-abcdefghij"
ORG = f"arn:aws:organizations::{MGMT}:organization/{ORG_ID}"
OU = f"arn:aws:organizations::{MGMT}:ou/{ORG_ID}/ou-ab12-cdefghij"
OTHER_OU = f"arn:aws:organizations::{MGMT}:ou/{ORG_ID}/ou-zz99-zzzzzzzz"


def organization(arn: str) -> Principal:
    return Principal(arn, PrincipalType.ORGANIZATION)


def unit(arn: str) -> Principal:
    return Principal(arn, PrincipalType.ORGANIZATIONAL_UNIT)


def allows(entries: list[str], principal: Principal) -> bool:
    return DestinationGuardrail.parse(entries).allows(principal)


class TestAccounts:
    def test_an_account_entry_allows_that_account_only(self) -> None:
        assert allows(["222222222222"], account("222222222222"))
        assert not allows(["222222222222"], account("222222222223"))

    def test_a_trailing_star_allows_accounts_with_that_prefix(self) -> None:
        assert allows(["2222*"], account("222211112222"))
        assert not allows(["2222*"], account("322211112222"))

    def test_an_account_entry_allows_no_organization_or_ou(self) -> None:
        for entry in (MGMT, "1111*"):
            assert not allows([entry], organization(ORG))
            assert not allows([entry], unit(OU))

    def test_a_malformed_account_principal_is_refused(self) -> None:
        assert not allows(["2222*"], account("2222"))
        assert not allows(["2222*"], account("2222222222220"))
        assert not allows(["2222*"], account("222222222222\n"))
        assert not allows([ORG], organization(ORG + "\n"))


class TestOrganizations:
    def test_an_organization_entry_allows_it_and_its_ous(self) -> None:
        assert allows([ORG], organization(ORG))
        assert allows([ORG], unit(OU))
        assert allows([ORG], unit(OTHER_OU))

    def test_the_management_account_is_compared_exactly(self) -> None:
        elsewhere = f"arn:aws:organizations::999999999999:organization/{ORG_ID}"
        assert not allows([ORG], organization(elsewhere))
        assert not allows(
            [ORG], unit(f"arn:aws:organizations::999999999999:ou/{ORG_ID}/ou-ab12-cdefghij")
        )
        assert not allows(
            [f"arn:aws:organizations::{MGMT}:organization/o-*"], organization(elsewhere)
        )

    def test_the_partition_is_compared_exactly(self) -> None:
        gov = f"arn:aws-us-gov:organizations::{MGMT}:organization/{ORG_ID}"
        assert not allows([ORG], organization(gov))
        assert allows([gov], organization(gov))

    def test_another_organization_is_refused(self) -> None:
        other = f"arn:aws:organizations::{MGMT}:organization/o-zzzzzzzzzz"
        assert not allows([ORG], organization(other))

    def test_the_organization_id_may_end_in_a_star(self) -> None:
        entry = f"arn:aws:organizations::{MGMT}:organization/o-abc*"
        assert allows([entry], organization(ORG))
        assert allows([entry], unit(OU))
        assert not allows(
            [entry], organization(f"arn:aws:organizations::{MGMT}:organization/o-abdefghijk")
        )

    def test_an_organization_entry_allows_no_account(self) -> None:
        assert not allows([ORG], account(MGMT))


class TestOrganizationalUnits:
    def test_an_ou_entry_allows_that_ou_only(self) -> None:
        assert allows([OU], unit(OU))
        assert not allows([OU], unit(OTHER_OU))
        assert not allows([OU], organization(ORG))

    def test_a_star_for_the_ou_id_allows_every_ou_of_that_organization(self) -> None:
        entry = f"arn:aws:organizations::{MGMT}:ou/{ORG_ID}/*"
        assert allows([entry], unit(OU)) and allows([entry], unit(OTHER_OU))
        assert not allows([entry], organization(ORG))
        assert not allows(
            [entry], unit(f"arn:aws:organizations::{MGMT}:ou/o-zzzzzzzzzz/ou-ab12-cdefghij")
        )

    def test_the_ou_id_may_end_in_a_star(self) -> None:
        entry = f"arn:aws:organizations::{MGMT}:ou/{ORG_ID}/ou-ab12-*"
        assert allows([entry], unit(OU))
        assert not allows([entry], unit(OTHER_OU))

    def test_an_ou_entry_of_another_management_account_is_refused(self) -> None:
        entry = f"arn:aws:organizations::999999999999:ou/{ORG_ID}/*"
        assert not allows([entry], unit(OU))


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        pytest.param("*", "bare", id="bare-star"),
        pytest.param(" * ", "bare", id="bare-star-spaced"),
        pytest.param("arn:aws:organizations::111111111111:*", "'*' may only end", id="org-any"),
        pytest.param("arn:aws:organizations::*", "'*' may only end", id="partition-any"),
        pytest.param("arn:*", "'*' may only end", id="arn-any"),
        pytest.param(
            "arn:aws:organizations::1111*:organization/o-abcdefghij",
            "last character",
            id="mgmt-star",
        ),
        pytest.param(
            "arn:aws:organizations::111111111111:ou/o-abc*/ou-ab12-cdefghij",
            "last character",
            id="ou-org-star",
        ),
        pytest.param(
            "arn:aws:organizations::111111111111:ou/o-abcdefghij/*/x",
            "last character",
            id="ou-star-mid",
        ),
        pytest.param("11*1", "last character", id="account-star-inside"),
        pytest.param("1111**", "last character", id="account-two-stars"),
        pytest.param("11111111111?", "wildcards", id="question-mark"),
        pytest.param("[12]*", "wildcards", id="bracket-class"),
        pytest.param(
            "arn:aws:organizations::111111111111:organization/o-[a-z]*", "wildcards", id="org-class"
        ),
        pytest.param("111111111111*", "'*' may only end", id="account-12-digits-star"),
        pytest.param("12345678901", "give", id="account-11-digits"),
        pytest.param("o-abcdefghij", "give", id="bare-organization-id"),
        pytest.param("arn:aws:iam::111111111111:root", "give", id="iam-arn"),
        pytest.param("", "give", id="empty"),
        pytest.param(" 111111111111", "give", id="leading-space"),
        pytest.param("111111111111\n", "give", id="trailing-newline"),
        pytest.param(f"{ORG}\n", "give", id="organization-trailing-newline"),
    ],
)
def test_an_entry_other_than_the_documented_forms_is_refused(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as raised:
        DestinationGuardrail.parse([entry])

    assert repr(entry) in str(raised.value)


def test_a_string_is_not_taken_for_a_list_of_entries() -> None:
    with pytest.raises(TypeError):
        DestinationGuardrail.parse("222222222222")


def test_unset_allows_everything_and_empty_allows_nothing() -> None:
    assert DestinationGuardrail.parse(None) == ANY_DESTINATION
    assert ANY_DESTINATION.allows(account("222222222222")) and ANY_DESTINATION.allows(unit(OU))
    assert not DestinationGuardrail.parse([]).allows(account("222222222222"))
    assert ANY_SOURCE.allows("222222222222")
    assert not SourceGuardrail.parse([]).allows("222222222222")


def test_entries_are_kept_as_written() -> None:
    entries = ["2222*", ORG, OU]
    assert DestinationGuardrail.parse(entries).texts == entries
    assert ANY_DESTINATION.texts is None


class TestSources:
    def test_an_account_or_a_prefix_is_allowed(self) -> None:
        sources = SourceGuardrail.parse(["123456789012", "3333*"])
        assert sources.allows("123456789012") and sources.allows("333344445555")
        assert not sources.allows("123456789013")
        assert not sources.allows("3333")

    @pytest.mark.parametrize("entry", [ORG, OU, "*", "1111?", "arn:aws:organizations::*"])
    def test_anything_but_accounts_is_refused(self, entry: str) -> None:
        with pytest.raises(ValueError, match="is not an allowed"):
            SourceGuardrail.parse([entry])


class TestJobGuardrails:
    """What a worker checks again before a job changes anything: the service's lists and the
    lists of the token that created the job, both."""

    def guardrails(self) -> JobGuardrails:
        return JobGuardrails(
            sources=SourceGuardrail.parse(["1234*"]),
            destinations=DestinationGuardrail.parse(["2222*", ORG]),
            tokens={
                "team": (SourceGuardrail.parse(["123456789012"]), DestinationGuardrail.parse([OU]))
            },
        )

    def test_a_source_must_be_allowed_by_the_service_and_the_token(self) -> None:
        guardrails = self.guardrails()

        assert guardrails.allows_source("123456789012", "team")
        assert not guardrails.allows_source("123400000000", "team")  # the token's list
        assert guardrails.allows_source("123400000000", "other")  # a token without lists
        assert not guardrails.allows_source("999999999999", "other")  # the service's list

    def test_a_share_needs_both_lists_and_a_revoke_only_the_tokens(self) -> None:
        guardrails = self.guardrails()
        outside_the_service = account("333333333333")

        assert guardrails.allows_destination(unit(OU), "team", giving=True)
        assert not guardrails.allows_destination(account("222211112222"), "team", giving=True)
        assert guardrails.allows_destination(account("222211112222"), "other", giving=True)
        assert not guardrails.allows_destination(outside_the_service, "other", giving=True)
        # Taking access back is always allowed by the service, never beyond the token's list.
        assert guardrails.allows_destination(outside_the_service, "other", giving=False)
        assert not guardrails.allows_destination(outside_the_service, "team", giving=False)

    def test_a_token_no_longer_configured_is_limited_by_the_service_only(self) -> None:
        guardrails = self.guardrails()

        assert guardrails.allows_destination(account("222211112222"), "gone", giving=True)
        assert not guardrails.allows_destination(account("333333333333"), "gone", giving=True)
