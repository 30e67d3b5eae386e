"""What the ledger knows of access a job gave: share rows and every way in to a key."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.principals import Principal
from app.domain.types import KmsAccess


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One ledger row: what this principal was given of this image in this region.

    A row stays while anything it gave remains: launch permission, snapshot permission, or key
    access to one of `kms_key_ids` that no other active share of the principal needs. A row
    without launch permission is what remains of a revoke that left key access in place (or
    of an undo that failed halfway), kept so that a later revoke finds it.
    """

    principal: Principal
    launch_permission: bool
    snapshot_ids: tuple[str, ...]
    kms_key_ids: tuple[str, ...]
    job_id: str
    kms_access: KmsAccess = KmsAccess.KEY_POLICY
    copied_image_id: str | None = None
    copy_kms_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class ShareUpdate:
    """What a step gave one principal, merged into its ledger row (never overwriting)."""

    principal: Principal
    launch_permission: bool | None = None  # None: leave as it is
    snapshot_ids: tuple[str, ...] = ()
    kms_key_ids: tuple[str, ...] = ()
    copied_image_id: str | None = None  # the destination's own copy (None: leave as it is)
    copy_kms_key_id: str | None = None  # the key it was asked under (None: the default key)


@dataclass(frozen=True, slots=True)
class KeyAccess:
    """Every way in to one key the service gave one principal: our key-policy statement naming
    it, and every grant ever created for it (a revoke removes them all, whatever the mode)."""

    key_arn: str
    principal: Principal
    key_policy: bool = False
    grant_ids: tuple[str, ...] = field(default_factory=tuple)
