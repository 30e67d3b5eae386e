"""A job request as the service receives it, already checked for form by the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.types import Action, KmsAccess


@dataclass(frozen=True, slots=True)
class NewJob:
    action: Action
    image_id: str
    region: str
    source_account_id: str | None
    account_ids: list[str]
    organization_arns: list[str]
    organizational_unit_arns: list[str]
    kms_access: KmsAccess
    share_snapshots: bool
    verify: bool | None
    copy: dict[str, Any] | None
    reencrypt_key: str | None = None
    regions: list[str] = field(default_factory=list)
    region_kms_key_ids: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    repair: bool = False  # reconcile: grant again what AWS lost
    prune: bool = False  # reconcile: take back shares the ledger does not know
    # The request as sent, canonical JSON: the same Idempotency-Key must come with the same body.
    fingerprint: str = ""
