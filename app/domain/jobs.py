"""What a worker needs to know about a job to run it."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.principals import Principal
from app.domain.types import Action, KmsAccess


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_id: str
    action: Action
    image_id: str
    region: str
    source_account_id: str
    kms_access: KmsAccess
    share_snapshots: bool
    verify: bool


@dataclass(frozen=True, slots=True)
class LedgerShare:
    """What the ledger knows of one active share: how key access was given, and to what."""

    principal: Principal
    kms_access: KmsAccess
    kms_key_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]
    grant_ids: dict[str, str]


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One ledger row: this principal can use this image, through these keys and snapshots."""

    principal: Principal
    kms_key_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]
    grant_ids: dict[str, str] = field(default_factory=dict)
