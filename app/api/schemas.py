"""The HTTP contract's bodies (docs/api.md). Field names and values here are fixed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from app.api.fields import MAX_LABELS, LabelKey, LabelValue, Region, label_problem
from app.db.job_repository import Progress
from app.db.models import JobEvent, JobTarget, KeyAccessRow, Share
from app.domain.principals import ACCOUNT_ID, IMAGE_ID, ORGANIZATION_ARN, OU_ARN
from app.domain.types import Action, KmsAccess, TargetStatus
from app.service.jobs import JobWithProgress
from app.service.requests import NewJob

AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID.pattern)]
OrganizationArn = Annotated[str, StringConstraints(pattern=ORGANIZATION_ARN.pattern)]
OrganizationalUnitArn = Annotated[str, StringConstraints(pattern=OU_ARN.pattern)]


# A KMS key as a job names it: a key ID, key ARN, alias name or alias ARN.
KMS_KEY = (
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
    r"|alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws(?:-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:(?:key/[A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250}))$"
)
KmsKeyId = Annotated[str, StringConstraints(max_length=2048, pattern=KMS_KEY)]
MAX_REGIONS = 20


class CopyOptions(BaseModel):
    """Each destination account copies the shared image into itself, re-encrypted."""

    model_config = ConfigDict(extra="forbid")

    kms_key_id: KmsKeyId | None = Field(
        default=None,
        description="A key of the destination (alias, ID or ARN); null: its default EBS key.",
    )
    copy_tags: bool = Field(
        default=True, description="Give each copy the source image's user tags."
    )


class ReencryptOptions(BaseModel):
    """An image under an AWS-managed key (aws/ebs) is first copied in the source account
    re-encrypted with this customer-managed key, and the copy is shared."""

    model_config = ConfigDict(extra="forbid")

    kms_key_id: KmsKeyId = Field(description="A customer-managed key of the source account.")

    @field_validator("kms_key_id")
    @classmethod
    def _customer_managed(cls, value: str) -> str:
        if value.startswith("alias/aws/") or ":alias/aws/" in value:
            raise PydanticCustomError(
                "aws_managed_key",
                "an AWS-managed key cannot be shared: name a customer-managed key",
            )
        return value


class JobCreate(BaseModel):
    """A share or revoke request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "share",
                    "image_id": "ami-0123456789abcdef0",
                    "region": "us-east-1",
                    "account_ids": ["222222222222"],
                    "kms_access": "key_policy",
                    "labels": {"team": "platform"},
                }
            ]
        },
    )

    action: Action = Field(
        description="'share', 'revoke', or 'reconcile' (the ledger against AWS: targets are "
        "optional, by default every principal the ledger or AWS shows for the image)"
    )
    image_id: str = Field(pattern=IMAGE_ID.pattern, examples=["ami-0123456789abcdef0"])
    region: Region = Field(examples=["us-east-1"])
    source_account_id: AccountId | None = Field(
        default=None, description="Default: the account of the service's own credentials."
    )
    account_ids: list[AccountId] = Field(default_factory=list, max_length=1000)
    organization_arns: list[OrganizationArn] = Field(default_factory=list, max_length=1000)
    organizational_unit_arns: list[OrganizationalUnitArn] = Field(
        default_factory=list, max_length=1000
    )
    kms_access: KmsAccess = KmsAccess.KEY_POLICY
    share_snapshots: bool = True
    verify: bool | None = Field(
        default=None, description="Default: true when a destination role is configured."
    )
    # `copy` would shadow BaseModel.copy: stored under another name, spoken as `copy`.
    copy_options: CopyOptions | None = Field(default=None, alias="copy")
    reencrypt: ReencryptOptions | None = None
    regions: list[Region] = Field(
        default_factory=list,
        max_length=MAX_REGIONS,
        description="More Regions: the source copies the image into each, re-encrypted with "
        "that Region's key in region_kms_key_ids, and shares each copy like the image.",
    )
    region_kms_key_ids: dict[Region, KmsKeyId] = Field(
        default_factory=dict,
        max_length=MAX_REGIONS,
        description="For each of regions, a customer-managed key of the source in that Region.",
    )
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    repair: bool = Field(
        default=False,
        description="reconcile: grant again, through the share's own steps, what the ledger "
        "records and AWS no longer has.",
    )
    prune: bool = Field(
        default=False,
        description="reconcile: take back shares AWS has and the ledger does not know (by "
        "default they are reported, never removed).",
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_are_few_and_safe(cls, labels: object) -> object:
        # Before the entries' own checks: 100,000 bad labels would be 100,000 errors, and a
        # lone surrogate would be refused as "not a string" rather than named.
        if not isinstance(labels, dict):
            return labels
        if len(labels) > MAX_LABELS:
            raise PydanticCustomError(
                "too_long",
                "at most {max} labels, not {count}",
                {"max": MAX_LABELS, "count": len(labels)},
            )
        for key, value in labels.items():
            # A value that is not a string is left to its own check ("labels.<key>").
            problem = label_problem(str(key), value if isinstance(value, str) else "")
            if problem is not None:
                raise PydanticCustomError("label_invalid", "{problem}", {"problem": problem})
        return labels

    def to_new_job(self) -> NewJob:
        body = self.model_dump(mode="json", by_alias=True)
        for flag in ("repair", "prune"):  # unset, a body hashes as it did before they existed
            if not body[flag]:
                del body[flag]
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return NewJob(
            action=Action(self.action),
            image_id=self.image_id,
            region=self.region,
            source_account_id=self.source_account_id,
            account_ids=list(self.account_ids),
            organization_arns=list(self.organization_arns),
            organizational_unit_arns=list(self.organizational_unit_arns),
            kms_access=self.kms_access,
            share_snapshots=self.share_snapshots,
            verify=self.verify,
            copy=self.copy_options.model_dump() if self.copy_options else None,
            reencrypt_key=self.reencrypt.kms_key_id if self.reencrypt else None,
            regions=list(self.regions),
            region_kms_key_ids=dict(self.region_kms_key_ids),
            labels=dict(self.labels),
            repair=self.repair,
            prune=self.prune,
            fingerprint=fingerprint,
        )


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobProgress(BaseModel):
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int

    @classmethod
    def of(cls, counts: Progress) -> JobProgress:
        return cls(
            total=sum(counts.values()),
            pending=counts[TargetStatus.PENDING],
            running=counts[TargetStatus.RUNNING],
            succeeded=counts[TargetStatus.SUCCEEDED],
            failed=counts[TargetStatus.FAILED],
            cancelled=counts[TargetStatus.CANCELLED],
        )


class JobOut(BaseModel):
    id: str
    action: str
    status: str
    image_id: str
    region: str
    source_account_id: str
    kms_access: str
    share_snapshots: bool
    verify: bool
    copy_options: dict[str, Any] | None = Field(alias="copy")
    reencrypt: dict[str, Any] | None
    regions: list[str]
    region_kms_key_ids: dict[str, str]
    shared_image_id: str | None = Field(
        description="The image shared: image_id, or its copy re-encrypted with reencrypt's key "
        "(null until the worker has looked at the image)."
    )
    labels: dict[str, str]
    repair: bool = Field(description="reconcile: what AWS lost is granted again.")
    prune: bool = Field(description="reconcile: shares the ledger does not know are removed.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgress
    error: ErrorInfo | None
    attempts: int
    destination_policy: dict[str, Any] = Field(
        description="The IAM policy identities in a destination need to find, launch (and "
        "with copy, copy) the shared images: the keys are complete once the worker has looked "
        "at the images. Also GET /v1/jobs/{id}/destination-policy."
    )

    @classmethod
    def of(cls, found: JobWithProgress) -> JobOut:
        job, progress = found.job, found.progress
        return cls(
            id=job.id,
            action=job.action,
            status=job.status,
            image_id=job.image_id,
            region=job.region,
            source_account_id=job.source_account_id,
            kms_access=job.kms_access,
            share_snapshots=job.share_snapshots,
            verify=job.verify,
            copy=job.copy_options,
            reencrypt=job.reencrypt,
            regions=job.regions,
            region_kms_key_ids=job.region_kms_key_ids,
            shared_image_id=job.shared_image_id,
            labels=job.labels,
            repair=job.repair,
            prune=job.prune,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            progress=JobProgress.of(progress),
            error=_error(job.error_code, job.error_message),
            attempts=job.attempts,
            destination_policy=found.destination_policy,
        )


def _error(code: str | None, message: str | None) -> ErrorInfo | None:
    return ErrorInfo(code=code, message=message or "") if code else None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class Drift(BaseModel):
    missing: list[Literal["launch_permission", "snapshots", "kms_access"]] = Field(
        description="What the ledger says is shared and AWS no longer has (removed by hand)."
    )
    unrecorded: bool = Field(
        description="AWS shares the image with the principal and the ledger does not know it."
    )


class TargetOut(BaseModel):
    principal: str
    principal_type: str
    region: str = Field(description="A target is a principal in one of the job's Regions.")
    image_id: str | None = Field(
        description="The image shared in that Region (a copy of the job's image elsewhere)."
    )
    status: str
    step: str
    attempts: int
    error: ErrorInfo | None
    note: str | None = Field(description="What a person should know, e.g. snapshots skipped.")
    copied_image_id: str | None
    drift: Drift | None = Field(
        description="reconcile: what differs between the ledger and AWS (null: they agree, "
        "and on share and revoke targets)."
    )
    updated_at: datetime

    @classmethod
    def of(cls, target: JobTarget) -> TargetOut:
        return cls(
            principal=target.principal,
            principal_type=target.principal_type,
            region=target.region,
            image_id=target.image_id,
            status=target.status,
            step=target.step,
            attempts=target.attempts,
            error=_error(target.error_code, target.error_message),
            note=target.note,
            copied_image_id=target.copied_image_id,
            drift=Drift.model_validate(target.drift) if target.drift else None,
            updated_at=target.updated_at,
        )


class TargetPage(BaseModel):
    items: list[TargetOut]
    next_cursor: str | None


class KeyAccessOut(BaseModel):
    """Every way in to one key the service gave the principal (a revoke removes them all)."""

    model_config = ConfigDict(from_attributes=True)

    kms_key_id: str = Field(validation_alias="key_arn")
    key_policy: bool = Field(description="An amishare key-policy statement names the principal.")
    grant_ids: list[str] = Field(description="Every grant amishare created for the principal.")


class ShareOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    image_id: str
    region: str
    principal: str
    principal_type: str
    kms_key_ids: list[str]
    snapshot_ids: list[str]
    shared_at: datetime
    job_id: str
    source_image_id: str | None = Field(
        description="When image_id is a copy amishare made in the source (re-encrypted): the "
        "image it is a copy of. Filtering by that image finds this share too."
    )
    copied_image_id: str | None = Field(
        description="The destination's own copy of the image (`copy`); a revoke never deletes it."
    )
    launch_permission: bool = Field(
        description="False: launch permission was taken back, but something else remains "
        "(key access a revoke with kms_access 'none' left, or what an undo could not remove)."
    )
    key_access: list[KeyAccessOut] = Field(
        description="How the principal may use each of `kms_key_ids` (key access may be shared "
        "with other images under the same key)."
    )

    @classmethod
    def of(cls, share: Share, key_access: Sequence[KeyAccessRow] = ()) -> ShareOut:
        mine = [k for k in key_access if k.key_arn in share.kms_key_ids]
        return cls.model_validate(
            {
                **share.model_dump(),
                "key_access": [KeyAccessOut.model_validate(k) for k in mine],
            }
        )


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    api: str
    resource: str
    principals: list[str]
    request_id: str | None
    outcome: str
    message: str | None
    detail: dict[str, Any] | None = Field(
        description="What exactly changed: grant IDs and names, principals added or removed."
    )

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls.model_validate(event)


class SharePage(BaseModel):
    items: list[ShareOut]
    next_cursor: str | None


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class Health(BaseModel):
    status: str


class ProblemFieldError(BaseModel):
    field: str
    message: str
    location: str = "body"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemFieldError] | None = None
