"""Key access, both ways: give destinations the keys behind an image, and take every way in
back, except where another share still needs the key.

Every way in the service gives is recorded in the key-access ledger as soon as it exists: our
key-policy statement naming the principal, and each grant ID. Taking access back removes all of
them whatever mode the share used, and what AWS shows by name besides (a grant made just before
a crash, a statement naming the principal), and the grants the destination made from ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.aws.gateway import GrantInfo
from app.domain.access import KeyAccess
from app.domain.principals import Principal
from app.domain.types import KmsAccess
from app.worker.steps import GrantToRevoke, Rejected, SourceSteps, grant_name


async def grant_key_access(
    steps: SourceSteps, key_arns: Sequence[str], principals: Sequence[Principal], mode: KmsAccess
) -> Rejected:
    """Give `principals` every key, by our key-policy statements or by one grant per account
    and key. Returns the principals AWS refused."""
    rejected: Rejected = {}
    for key_arn in key_arns:
        live = [p for p in principals if p not in rejected]
        async with steps.key_lock(key_arn):
            if mode is KmsAccess.KEY_POLICY:
                rejected |= await steps.grant_key_policy(key_arn, live)
            else:
                rejected |= await steps.create_grants(key_arn, [p for p in live if p.is_account])
    return rejected


@dataclass
class KeyRelease:
    """What taking key access back left: refusals, and keys kept because something needs them."""

    rejected: Rejected = field(default_factory=dict)
    # principal -> key ARN -> what still needs it (image IDs, or unfinished share jobs)
    kept: dict[Principal, dict[str, list[str]]] = field(default_factory=dict)
    # principal -> keys whose access could not be taken back (it remains, recorded)
    remaining: dict[Principal, list[str]] = field(default_factory=dict)


async def release_key_access(
    steps: SourceSteps, key_arns: Sequence[str], principals: Sequence[Principal]
) -> KeyRelease:
    """Take back every way in to each key from `principals`, except from those another active
    share (or an unfinished share job) still needs that key for."""
    release = KeyRelease()
    for key_arn in key_arns:
        live = [p for p in principals if p not in release.rejected]
        for principal in release.rejected:  # refused on an earlier key: this one stays too
            release.remaining.setdefault(principal, []).append(key_arn)
        async with steps.key_lock(key_arn):
            await _release_one_key(steps, key_arn, live, release)
    return release


async def _release_one_key(
    steps: SourceSteps, key_arn: str, principals: Sequence[Principal], release: KeyRelease
) -> None:
    needed = await steps.recorder.key_needed_elsewhere(key_arn, principals)
    for principal, needed_by in needed.items():
        release.kept.setdefault(principal, {})[key_arn] = needed_by
    remove = [p for p in principals if p not in needed]
    if not remove:
        return
    rejected = await steps.revoke_key_policy(key_arn, remove)
    accounts = [p for p in remove if p.is_account and p not in rejected]
    if accounts:
        recorded = await steps.recorder.key_access(key_arn, accounts)
        grants = await steps.list_grants(key_arn)
        rejected |= await steps.revoke_grants(grants_to_revoke(key_arn, accounts, grants, recorded))
    release.rejected |= rejected
    for principal in rejected:
        release.remaining.setdefault(principal, []).append(key_arn)
    await steps.recorder.forget_key_access(key_arn, [p for p in remove if p not in rejected])


def grants_to_revoke(
    key_arn: str,
    accounts: Sequence[Principal],
    grants: Sequence[GrantInfo],
    recorded: dict[Principal, KeyAccess],
) -> list[GrantToRevoke]:
    """Ours (recorded, or found by our deterministic name) and the ones each destination made
    from ours (issued by its account): a destination keeps no way in to the key."""
    by_account = {p.value: p for p in accounts}
    found: dict[str, GrantToRevoke] = {}
    for principal, access in recorded.items():
        for grant_id in access.grant_ids:
            found[grant_id] = GrantToRevoke(key_arn, grant_id, principal)
    for grant in grants:
        grantee = _account_in(grant.grantee_principal)
        issuer = _account_in(grant.issuing_account or "")
        if grantee in by_account and grant.name == grant_name(grantee):
            found[grant.grant_id] = GrantToRevoke(key_arn, grant.grant_id, by_account[grantee])
        elif issuer in by_account:
            found[grant.grant_id] = GrantToRevoke(key_arn, grant.grant_id, by_account[issuer])
    return list(found.values())


def _account_in(arn: str) -> str | None:
    """The account of an IAM ARN (`arn:aws:iam::123456789012:root`) or a bare account ID."""
    if len(arn) == 12 and arn.isascii() and arn.isdigit():
        return arn
    parts = arn.split(":")
    return parts[4] if len(parts) >= 6 and parts[2] in ("iam", "sts") else None
