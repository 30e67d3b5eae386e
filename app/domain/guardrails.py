"""Guardrails: which accounts may be a job's source and which principals its destinations
(AMISHARE_ALLOWED_SOURCES, AMISHARE_ALLOWED_DESTINATIONS, and a token's own lists).

An entry is parsed into its parts and compared part by part with a parsed principal, never
matched as text. Entry forms:

- an account: `111111111111`, or leading digits and `*` (`1111*`: any account starting so);
- an organization: `arn:<partition>:organizations::<management account>:organization/o-…`;
  it also allows the OUs of that organization;
- an OU: `arn:<partition>:organizations::<management account>:ou/o-…/ou-…`.

Partition, management account and (for an OU entry) organization ID are compared exactly. Only
the last part of an entry may end in `*` (`organization/o-ab*`, `ou/o-…/ou-ab12-*`, `ou/o-…/*`);
any other wildcard (`?`, `[…]`, a `*` elsewhere, a bare `*`) is refused by `parse`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.domain.principals import ACCOUNT_ID, ORGANIZATION_ARN, OU_ARN, Principal, account
from app.domain.types import PrincipalType

_ACCOUNT_ENTRY = re.compile(r"[0-9]{12}|[0-9]{1,11}\*")
# Matched with fullmatch: `$` would let a trailing newline through.
_ORG_ENTRY_PREFIX = r"arn:(aws(?:-[a-z]+)*):organizations::([0-9]{12}):"
_ORGANIZATION_ENTRY = re.compile(
    _ORG_ENTRY_PREFIX + r"organization/(o-[a-z0-9]{10,32}|(?:o-[a-z0-9]{0,31})?\*)"
)
_OU_ENTRY = re.compile(
    _ORG_ENTRY_PREFIX
    + r"ou/(o-[a-z0-9]{10,32})/(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|(?:ou-[a-z0-9-]{0,64})?\*)"
)
_FORMS = (
    "an account ID (12 digits, or leading digits and '*'), an organization ARN "
    "(arn:aws:organizations::<management account>:organization/o-…) or an OU ARN "
    "(arn:aws:organizations::<management account>:ou/o-…/ou-…)"
)


def _matches(pattern: str, value: str) -> bool:
    """A trailing '*' matches any rest (the empty one too); otherwise the value exactly."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True, slots=True)
class _OrgParts:
    partition: str
    management_account: str
    organization_id: str
    unit_id: str | None


def _org_parts(principal: Principal) -> _OrgParts | None:
    """The parts of an organization or OU principal; None for an account or a malformed one."""
    if principal.type == PrincipalType.ORGANIZATION:
        match = ORGANIZATION_ARN.fullmatch(principal.value)
        unit_id = None
    elif principal.type == PrincipalType.ORGANIZATIONAL_UNIT:
        match = OU_ARN.fullmatch(principal.value)
        unit_id = match.group(3) if match else None
    else:
        return None
    if match is None:
        return None
    partition = principal.value.split(":")[1]  # the ARN matched: arn:<partition>:…
    return _OrgParts(partition, match.group(1), match.group(2), unit_id)


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """`111111111111`, or `1111*` for any account whose ID starts with 1111."""

    text: str

    def allows(self, principal: Principal) -> bool:
        return (
            principal.type == PrincipalType.ACCOUNT
            and ACCOUNT_ID.fullmatch(principal.value) is not None
            and _matches(self.text, principal.value)
        )


@dataclass(frozen=True, slots=True)
class OrganizationEntry:
    """An organization (its ID may end in '*'), and every OU in it."""

    text: str
    partition: str
    management_account: str
    organization_id: str

    def allows(self, principal: Principal) -> bool:
        parts = _org_parts(principal)
        return (
            parts is not None
            and parts.partition == self.partition
            and parts.management_account == self.management_account
            and _matches(self.organization_id, parts.organization_id)
        )


@dataclass(frozen=True, slots=True)
class OrganizationalUnitEntry:
    """OUs of one organization: one OU, or those whose ID starts so ('*' at the end)."""

    text: str
    partition: str
    management_account: str
    organization_id: str
    unit_id: str

    def allows(self, principal: Principal) -> bool:
        parts = _org_parts(principal)
        return (
            parts is not None
            and parts.unit_id is not None
            and parts.partition == self.partition
            and parts.management_account == self.management_account
            and parts.organization_id == self.organization_id
            and _matches(self.unit_id, parts.unit_id)
        )


DestinationEntry = AccountEntry | OrganizationEntry | OrganizationalUnitEntry


def parse_entry(text: str) -> DestinationEntry:
    """One entry; ValueError naming it if it is not one of the forms above."""
    if _ACCOUNT_ENTRY.fullmatch(text):
        return AccountEntry(text)
    if match := _ORGANIZATION_ENTRY.fullmatch(text):
        return OrganizationEntry(text, match.group(1), match.group(2), match.group(3))
    if match := _OU_ENTRY.fullmatch(text):
        return OrganizationalUnitEntry(
            text, match.group(1), match.group(2), match.group(3), match.group(4)
        )
    raise ValueError(f"{text!r} is not an allowed-list entry: {_why_not(text)}")


def _why_not(text: str) -> str:
    if text.strip() == "*":
        return "a bare '*' would allow everything; leave the list unset instead"
    if any(c in text for c in "?[]"):
        return "'?' and '[…]' are not wildcards here; only a trailing '*' is"
    if "*" in text[:-1]:
        return "'*' may only be the last character, ending the last part of the entry"
    if text.endswith("*"):
        return f"'*' may only end the account digits, the o-… ID or the ou-… ID of {_FORMS}"
    return f"give {_FORMS}"


def _texts(entries: Sequence[str] | None) -> Iterable[str] | None:
    if isinstance(entries, str):  # a str is a Sequence[str] too: one entry per character
        raise TypeError("give a sequence of entries, not one string")
    return entries


@dataclass(frozen=True, slots=True)
class DestinationGuardrail:
    """Which principals a job may have as destinations. `entries` None: any principal."""

    entries: tuple[DestinationEntry, ...] | None = None

    @classmethod
    def parse(cls, entries: Sequence[str] | None) -> DestinationGuardrail:
        """None: unrestricted; an empty list: nothing allowed. ValueError names a bad entry."""
        texts = _texts(entries)
        return cls(None if texts is None else tuple(parse_entry(text) for text in texts))

    @property
    def restricted(self) -> bool:
        return self.entries is not None

    @property
    def texts(self) -> list[str] | None:
        return None if self.entries is None else [entry.text for entry in self.entries]

    def allows(self, principal: Principal) -> bool:
        """Whether `principal` may be a destination. Pure; safe to call before every change."""
        return self.entries is None or any(entry.allows(principal) for entry in self.entries)


@dataclass(frozen=True, slots=True)
class SourceGuardrail:
    """Which accounts a job may take its image from. `entries` None: any account."""

    entries: tuple[AccountEntry, ...] | None = None

    @classmethod
    def parse(cls, entries: Sequence[str] | None) -> SourceGuardrail:
        """None: unrestricted; an empty list: nothing allowed. ValueError names a bad entry."""
        texts = _texts(entries)
        if texts is None:
            return cls(None)
        parsed: list[AccountEntry] = []
        for text in texts:
            entry = parse_entry(text)
            if not isinstance(entry, AccountEntry):
                raise ValueError(
                    f"{text!r} is not an allowed source: a source is an account ID "
                    "(12 digits, or leading digits and '*')"
                )
            parsed.append(entry)
        return cls(tuple(parsed))

    @property
    def restricted(self) -> bool:
        return self.entries is not None

    @property
    def texts(self) -> list[str] | None:
        return None if self.entries is None else [entry.text for entry in self.entries]

    def allows(self, account_id: str) -> bool:
        """Whether a job may use `account_id` as its source account."""
        return self.entries is None or any(
            entry.allows(account(account_id)) for entry in self.entries
        )


ANY_DESTINATION = DestinationGuardrail()
ANY_SOURCE = SourceGuardrail()


@dataclass(frozen=True, slots=True)
class JobGuardrails:
    """What a worker checks again before a job changes anything: the service's lists, and the
    lists of the token that created the job (a job may wait in the queue while they tighten)."""

    sources: SourceGuardrail = ANY_SOURCE
    destinations: DestinationGuardrail = ANY_DESTINATION
    # token name -> its own (sources, destinations)
    tokens: Mapping[str, tuple[SourceGuardrail, DestinationGuardrail]] = field(default_factory=dict)

    def allows_source(self, account_id: str, created_by: str) -> bool:
        own = self.tokens.get(created_by, (ANY_SOURCE, ANY_DESTINATION))[0]
        return self.sources.allows(account_id) and own.allows(account_id)

    def allows_destination(self, principal: Principal, created_by: str, *, giving: bool) -> bool:
        """`giving`: a share. The service's list guards what is given; a revoke may always take
        access back, within the token's own list."""
        own = self.tokens.get(created_by, (ANY_SOURCE, ANY_DESTINATION))[1]
        service = self.destinations.allows(principal) or not giving
        return service and own.allows(principal)
