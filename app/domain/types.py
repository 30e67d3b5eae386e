"""The vocabulary of jobs: actions, statuses, steps, principals."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    SHARE = "share"
    REVOKE = "revoke"
    RECONCILE = "reconcile"  # the ledger against AWS: drift found, and repaired or pruned


class KmsAccess(StrEnum):
    KEY_POLICY = "key_policy"
    GRANT = "grant"
    NONE = "none"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class TargetStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Step(StrEnum):
    """Where a target is, in share order (a revoke runs the AWS steps backwards)."""

    PENDING = "pending"
    INSPECT = "inspect"
    KMS_ACCESS = "kms_access"
    SNAPSHOTS = "snapshots"
    LAUNCH_PERMISSION = "launch_permission"
    VERIFY = "verify"
    COPY = "copy"
    LEDGER = "ledger"


class PrincipalType(StrEnum):
    ACCOUNT = "account"
    ORGANIZATION = "organization"
    ORGANIZATIONAL_UNIT = "organizational_unit"
