"""What the share and revoke procedures need from outside them: a JobRecorder, to record as
they go (the worker gives them a database-backed one, tests an in-memory one), and KeyLocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from app.aws.gateway import Change
from app.domain.access import KeyAccess, ShareRecord, ShareUpdate
from app.domain.copies import SourceCopy
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal
from app.domain.types import Step


class JobRecorder(Protocol):
    def in_region(self, spec: JobSpec) -> JobRecorder:
        """The recorder of the job's targets in `spec.region` (its ledger that Region's)."""
        ...

    # Targets: each record is about these principals of this job (in this recorder's Region).
    async def start(self, principals: Sequence[Principal]) -> None: ...

    async def reach(self, principals: Sequence[Principal], step: Step) -> None: ...

    async def fail(
        self, principals: Sequence[Principal], step: Step, code: str, message: str
    ) -> None: ...

    async def succeed(self, principals: Sequence[Principal], step: Step) -> None: ...

    async def note(self, principals: Sequence[Principal], note: str) -> None: ...

    async def cancel(self, principals: Sequence[Principal], note: str) -> None: ...

    async def fail_unfinished(self, code: str, message: str) -> None:
        """Every target not yet finished (in this Region) fails with this reason."""
        ...

    async def cancel_requested(self) -> bool: ...

    async def add_targets(self, principals: Sequence[Principal]) -> None:
        """New targets of the job, in this Region (a reconcile's, found on AWS and the
        ledger), pending."""
        ...

    async def record_drift(self, principal: Principal, drift: Mapping[str, Any] | None) -> None:
        """A reconcile's finding for the target (None: AWS and the ledger agree)."""
        ...

    # The audit trail.
    async def changed(self, *changes: Change) -> None:
        """AWS modifications succeeded: the audit trail gets them (one write for all)."""
        ...

    async def change_failed(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        code: str,
        message: str,
        request_id: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...

    # The ledger of this job's image and region, written as each change lands.
    async def shares(self, principals: Sequence[Principal]) -> dict[Principal, ShareRecord]: ...

    async def shared_principals(self) -> list[Principal]:
        """Every principal the ledger has a row for, of this image (in this Region)."""
        ...

    async def organization_shares(self) -> list[str]:
        """The organizations and OUs this image is shared with (their ARNs)."""
        ...

    async def record_shares(self, updates: Sequence[ShareUpdate]) -> None:
        """Merge what a step gave into the rows (created if missing)."""
        ...

    async def complete_shares(self, principals: Sequence[Principal]) -> None:
        """These shares are complete: their rows are this job's."""
        ...

    async def settle_shares(
        self, remaining: Sequence[ShareRecord], gone: Sequence[Principal]
    ) -> None:
        """After taking access back: rows say exactly what remains; `gone` rows are deleted."""
        ...

    # What the job shares, and the copies it makes.
    async def sharing(self, image_id: str, source_image_id: str | None) -> None:
        """From here on the job shares `image_id` (a copy of `source_image_id`, when set) in
        this Region: the targets (and, in the job's own Region, the job) say so, and the ledger
        rows are that image's."""
        ...

    async def ledger_of(self, image_id: str, source_image_id: str | None) -> None:
        """From here on the ledger rows are `image_id`'s (a revoke of an image and its
        copies), without changing what the job says it shares."""
        ...

    async def record_keys(self, key_arns: Sequence[str]) -> None:
        """The keys behind the image the job shares in this Region (destination_policy)."""
        ...

    async def source_copy(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> SourceCopy | None: ...

    async def record_source_copy(self, copy: SourceCopy) -> None: ...

    async def source_copies_of(self, image_id: str, region: str) -> list[str]:
        """The IDs of copies of `image_id` the service made in `region` (re-encrypted)."""
        ...

    async def copies(self, principals: Sequence[Principal]) -> dict[Principal, str]:
        """The destination copies already made for these targets (a resumed job)."""
        ...

    async def record_copy(self, principal: Principal, image_id: str) -> None:
        """A destination's copy exists (pending or not): recorded before it is waited for."""
        ...

    # The ledger of key access (keys are the job's region's).
    async def key_access(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, KeyAccess]: ...

    async def record_key_access(
        self,
        key_arn: str,
        principals: Sequence[Principal],
        *,
        key_policy: bool = False,
        grant_ids: Mapping[Principal, str] | None = None,
    ) -> None: ...

    async def forget_key_access(self, key_arn: str, principals: Sequence[Principal]) -> None: ...

    async def key_needed_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, list[str]]:
        """Which of these principals still need the key for anything but this image, and
        what needs it (image IDs, or IDs of share jobs not yet finished)."""
        ...


class KeyLocks(Protocol):
    """The lock taken around every read-modify-write of one KMS key policy (PutKeyPolicy
    replaces the whole document with no version check)."""

    def hold(self, name: str) -> AbstractAsyncContextManager[None]: ...
