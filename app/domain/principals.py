"""Destination principals: AWS accounts, organizations and organizational units."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.domain.types import PrincipalType

ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
_ORG_PREFIX = r"^arn:aws(?:-[a-z]+)*:organizations::([0-9]{12}):"
ORGANIZATION_ARN = re.compile(_ORG_PREFIX + r"organization/(o-[a-z0-9]{10,32})$")
OU_ARN = re.compile(_ORG_PREFIX + r"ou/(o-[a-z0-9]{10,32})/(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})$")
IMAGE_ID = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """One destination: the value AWS receives, and its kind."""

    value: str
    type: PrincipalType

    @property
    def is_account(self) -> bool:
        return self.type is PrincipalType.ACCOUNT

    @property
    def organization_id(self) -> str | None:
        """`o-…` for an organization or OU principal."""
        pattern = ORGANIZATION_ARN if self.type is PrincipalType.ORGANIZATION else OU_ARN
        match = pattern.match(self.value) if not self.is_account else None
        return match.group(2) if match else None

    @property
    def org_path(self) -> str | None:
        """`o-…/r-…/ou-…/` as `aws:PrincipalOrgPaths` expects, with a wildcard root."""
        match = OU_ARN.match(self.value) if self.type is PrincipalType.ORGANIZATIONAL_UNIT else None
        if match is None:
            return None
        return f"{match.group(2)}/*/{match.group(3)}/*"

    def iam_root_arn(self, partition: str = "aws") -> str:
        """The account's root principal, in the partition of the job's Region."""
        assert self.is_account
        return f"arn:{partition}:iam::{self.value}:root"


def account(account_id: str) -> Principal:
    return Principal(account_id, PrincipalType.ACCOUNT)


def principal_of(value: str, principal_type: str) -> Principal:
    return Principal(value, PrincipalType(principal_type))
