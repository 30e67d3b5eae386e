"""The tables: job, job_target, share, key_access, image_copy, job_event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db.types import UtcDateTime, utcnow

# Named constraints so that Alembic migrations are stable on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def _time(nullable: bool = False, **kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, nullable=nullable, **kwargs)


class Job(SQLModel, table=True):
    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint("created_by", "idempotency_key", name="uq_job_idempotency"),
        Index("ix_job_claim", "status", "lease_expires_at"),
        Index("ix_job_image", "image_id", "region", "status"),
    )

    # `seq` orders jobs as they were accepted; `id` is what clients see.
    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=40)
    action: str = Field(max_length=16)
    status: str = Field(max_length=24)
    image_id: str = Field(max_length=32)
    region: str = Field(max_length=32)
    source_account_id: str = Field(max_length=12)
    kms_access: str = Field(max_length=16)
    share_snapshots: bool
    verify: bool
    copy_options: dict[str, Any] | None = Field(default=None, sa_column=Column("copy", JSON))
    reencrypt: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # reconcile: grant again what the ledger records and AWS lost; remove unrecorded shares.
    repair: bool = False
    prune: bool = False
    # More Regions: the image is copied by the source into each, re-encrypted with that
    # Region's key, and each copy is shared like the image in `region`.
    regions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    region_kms_key_ids: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # The image the job shares: `image_id`, or its copy re-encrypted with `reencrypt`'s key
    # (None until the worker knows).
    shared_image_id: str | None = Field(default=None, max_length=32)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = _time(default_factory=utcnow)
    updated_at: datetime = _time(default_factory=utcnow)
    started_at: datetime | None = _time(nullable=True, default=None)
    finished_at: datetime | None = _time(nullable=True, default=None)
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = None
    attempts: int = 0
    worker_id: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = _time(nullable=True, default=None)
    cancel_requested: bool = False
    # Bumped by every change to the job or its targets: the ETag and the cheap 304.
    version: int = 1


class JobTarget(SQLModel, table=True):
    __tablename__ = "job_target"
    __table_args__ = (
        UniqueConstraint("job_id", "principal", "region", name="uq_job_target_principal"),
        Index("ix_job_target_job_status", "job_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=40)
    position: int
    principal: str = Field(max_length=256)
    principal_type: str = Field(max_length=24)
    # A job has one target per (principal, Region): its own Region and each of `regions`.
    region: str = Field(max_length=32)
    image_id: str | None = Field(default=None, max_length=32)  # the image shared in `region`
    status: str = Field(max_length=16)
    step: str = Field(max_length=24)
    attempts: int = 0
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = None
    note: str | None = None
    copied_image_id: str | None = Field(default=None, max_length=32)
    # A reconcile's finding: {"missing": [...], "unrecorded": bool}; None where AWS and the
    # ledger agree (and on other jobs' targets).
    drift: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_at: datetime = _time(default_factory=utcnow)


class JobKey(SQLModel, table=True):
    """The KMS keys behind the images a job shares, in every Region of the job: what the
    destinations' own IAM policy must allow (destination_policy)."""

    __tablename__ = "job_key"
    __table_args__ = (UniqueConstraint("job_id", "key_arn", name="uq_job_key"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=40, index=True)
    key_arn: str = Field(max_length=256)


class Share(SQLModel, table=True):
    """The ledger: one row per (image, region, principal) shared right now."""

    __tablename__ = "share"
    __table_args__ = (
        UniqueConstraint("image_id", "region", "principal", name="uq_share_image_principal"),
        Index("ix_share_principal", "principal"),
    )

    id: int | None = Field(default=None, primary_key=True)
    image_id: str = Field(max_length=32)
    region: str = Field(max_length=32)
    principal: str = Field(max_length=256)
    principal_type: str = Field(max_length=24)
    source_account_id: str = Field(max_length=12)
    kms_access: str = Field(max_length=16)
    # The keys the image needs (its snapshots' keys); how the principal may use them is in
    # `key_access`, one row per key and principal, shared by every image under that key.
    kms_key_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Snapshots on which the principal has createVolumePermission.
    snapshot_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # False once a revoke took launch permission back but left something else in place.
    launch_permission: bool = True
    # When `image_id` is a copy the service made in the source (re-encrypted, or in another
    # Region): the image it is a copy of. A revoke of that image revokes this share too.
    source_image_id: str | None = Field(default=None, max_length=32, index=True)
    # The destination's own copy (`copy`): it owns it; a revoke never deletes it. A later
    # share asking for a copy under the same key reuses it.
    copied_image_id: str | None = Field(default=None, max_length=32)
    copy_kms_key_id: str | None = Field(default=None, max_length=2048)
    job_id: str = Field(max_length=40)
    shared_at: datetime = _time(default_factory=utcnow)
    updated_at: datetime = _time(default_factory=utcnow)


class KeyAccessRow(SQLModel, table=True):
    """The ledger of key access: every way in to one key the service gave one principal."""

    __tablename__ = "key_access"
    __table_args__ = (
        UniqueConstraint("key_arn", "principal", name="uq_key_access_key_principal"),
        Index("ix_key_access_principal", "principal", "region"),
    )

    id: int | None = Field(default=None, primary_key=True)
    region: str = Field(max_length=32)
    key_arn: str = Field(max_length=256)
    principal: str = Field(max_length=256)
    principal_type: str = Field(max_length=24)
    source_account_id: str = Field(max_length=12)
    # Our key-policy statement names the principal.
    key_policy: bool = False
    # Every grant ever created for the principal on this key, so that a revoke revokes them all.
    grant_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _time(default_factory=utcnow)


class ImageCopy(SQLModel, table=True):
    """A copy the service made in the source account: re-encrypted with a customer-managed key
    and/or in another Region. Made once per (image, Region, key) and reused by later jobs."""

    __tablename__ = "image_copy"
    __table_args__ = (
        UniqueConstraint(
            "source_image_id", "source_region", "region", "kms_key_id", name="uq_image_copy"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_account_id: str = Field(max_length=12)
    source_image_id: str = Field(max_length=32)
    source_region: str = Field(max_length=32)
    region: str = Field(max_length=32)
    kms_key_id: str = Field(max_length=2048)  # as the job named it (an alias, ID or ARN)
    client_token: str = Field(max_length=64)
    image_id: str | None = Field(default=None, max_length=32)  # once CopyImage answered
    state: str = Field(max_length=16)  # pending | available | failed
    created_at: datetime = _time(default_factory=utcnow)
    updated_at: datetime = _time(default_factory=utcnow)


class JobEvent(SQLModel, table=True):
    """The audit trail: every AWS change the service made, and its outcome."""

    __tablename__ = "job_event"
    __table_args__ = (Index("ix_job_event_job", "job_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=40)
    created_at: datetime = _time(default_factory=utcnow)
    api: str = Field(max_length=64)
    resource: str = Field(max_length=256)
    principals: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    request_id: str | None = Field(default=None, max_length=128)
    outcome: str = Field(max_length=64)
    message: str | None = None
    # What exactly changed (grant IDs and names, add or remove), as the gateway reported it.
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
