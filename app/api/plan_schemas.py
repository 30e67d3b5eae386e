"""The Plan body of POST /v1/plans (docs/api.md, "Plans"). Field names and values are fixed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.api.schemas import ErrorInfo
from app.db.models import Job
from app.domain.destination_policy import destination_policy
from app.domain.plans import PlannedChange
from app.worker.plan import Plan, PlannedTarget

# The contract names taking a grant back "RetireGrant"; the service does it as the key's owner,
# with kms:RevokeGrant (docs/aws.md): the job's events say RevokeGrant.
CONTRACT_API = {"RevokeGrant": "RetireGrant"}


class PlannedTargetOut(BaseModel):
    principal: str
    principal_type: str
    region: str
    outcome: Literal["change", "no_change", "refused"] = Field(
        description="change: the job would change AWS for it; no_change: already shared "
        "exactly so (a revoke: not shared); refused: the guardrail, or the job would fail."
    )
    reason: str | None

    @classmethod
    def of(cls, target: PlannedTarget) -> PlannedTargetOut:
        return cls(
            principal=target.principal.value,
            principal_type=target.principal.type,
            region=target.region,
            outcome=target.outcome,
            reason=target.reason,
        )


class KeyPolicyChangeOut(BaseModel):
    api: Literal["PutKeyPolicy"]
    resource: str = Field(description="The key's ARN.")
    region: str
    principals_added: list[str]
    principals_removed: list[str]
    policy_bytes_before: int
    policy_bytes_after: int = Field(description="KMS takes at most 32,768 bytes.")


class GrantChangeOut(BaseModel):
    api: Literal["CreateGrant", "RetireGrant"]
    resource: str = Field(description="The key's ARN.")
    region: str
    principals: list[str]


class PermissionChangeOut(BaseModel):
    api: Literal["ModifySnapshotAttribute", "ModifyImageAttribute"]
    resource: str = Field(description="The snapshot or image ID.")
    region: str
    add: list[str]
    remove: list[str]


class CopyChangeOut(BaseModel):
    api: Literal["CopyImage"]
    resource: str = Field(description="The image copied.")
    account: str = Field(description="The account that makes (and owns) the copy.")
    region: str = Field(description="The Region the copy is made in.")


PlanChangeOut = Annotated[
    KeyPolicyChangeOut | GrantChangeOut | PermissionChangeOut | CopyChangeOut,
    Field(discriminator="api"),
]


class KeptKeyAccessOut(BaseModel):
    principal: str
    kms_key_id: str
    needed_by: list[str] = Field(
        description="The images (or unfinished share jobs) that still need the key access."
    )


class PlanOut(BaseModel):
    action: str
    image_id: str
    region: str
    regions: list[str]
    error: ErrorInfo | None = Field(description="The job would fail as a whole, so.")
    targets: list[PlannedTargetOut]
    changes: list[PlanChangeOut]
    kept_key_access: list[KeptKeyAccessOut]
    destination_policy: dict[str, Any]

    @classmethod
    def of(cls, job: Job, plan: Plan) -> PlanOut:
        error = plan.error
        return cls(
            action=job.action,
            image_id=job.image_id,
            region=job.region,
            regions=job.regions,
            error=ErrorInfo(code=error.code, message=error.message) if error else None,
            targets=[PlannedTargetOut.of(t) for t in plan.targets],
            changes=[_change(c) for c in plan.changes],
            kept_key_access=[
                KeptKeyAccessOut(
                    principal=k.principal, kms_key_id=k.kms_key_id, needed_by=list(k.needed_by)
                )
                for k in plan.kept_key_access
            ],
            destination_policy=destination_policy(
                plan.key_arns, copies=job.copy_options is not None
            ),
        )


def _change(
    change: PlannedChange,
) -> KeyPolicyChangeOut | GrantChangeOut | PermissionChangeOut | CopyChangeOut:
    api = CONTRACT_API.get(change.api, change.api)
    region = change.region or ""
    if api == "PutKeyPolicy":
        return KeyPolicyChangeOut(
            api=api,
            resource=change.resource,
            region=region,
            principals_added=change.added,
            principals_removed=change.removed,
            policy_bytes_before=change.policy_bytes_before or 0,
            policy_bytes_after=change.policy_bytes_after or 0,
        )
    if api in ("CreateGrant", "RetireGrant"):
        return GrantChangeOut(
            api=api,
            resource=change.resource,
            region=region,
            principals=change.added or change.removed,
        )
    if api == "CopyImage":
        return CopyChangeOut(
            api=api, resource=change.resource, account=change.account or "", region=region
        )
    return PermissionChangeOut(
        api=api,
        resource=change.resource,
        region=region,
        add=change.added,
        remove=change.removed,
    )
