"""A share job (DESIGN.md, "A share job, step by step").

Source-side calls are one per key, per snapshot and per batch of principals, whatever the number
of destinations; destination-side work runs concurrently under a bound. Every step reads the
current state and applies the difference, so running it again after a crash is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.aws.gateway import AwsGateway, SourceAccount
from app.domain.jobs import JobSpec, LedgerShare, ShareRecord
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step
from app.worker.inspection import Inspection, inspect_image
from app.worker.locks import KeyLocks
from app.worker.recorder import JobRecorder
from app.worker.retry import RetryPolicy
from app.worker.revoke import release_key_access
from app.worker.steps import Rejected, SourceSteps
from app.worker.verification import Verifier

SNAPSHOT_ORG_NOTE = (
    "Snapshots not shared: AWS has no organization or OU form of createVolumePermission. "
    "Launching works; copying the AMI needs snapshot access granted per account."
)
CANCELLED_NOTE = "Cancelled before this destination was finished; changes made for it were undone."


@dataclass(frozen=True, slots=True)
class ProcedureSettings:
    target_concurrency: int
    retry: RetryPolicy


@dataclass
class ShareProgress:
    """The targets still going, and the grants made for them."""

    live: list[Principal]
    grants: dict[Principal, dict[str, str]] = field(default_factory=dict)

    def drop(self, rejected: Rejected) -> None:
        self.live = [p for p in self.live if p not in rejected]


class JobCancelledError(Exception):
    """The job was cancelled; the targets still live were undone and recorded."""


class ShareProcedure:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        recorder: JobRecorder,
        verifier: Verifier | None,
        settings: ProcedureSettings,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.verifier = verifier
        self.settings = settings

    def _steps(self, source: SourceAccount) -> SourceSteps:
        return SourceSteps(
            source,
            self.recorder,
            self.locks,
            self.settings.retry,
            self.settings.target_concurrency,
        )

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        await self.recorder.start(targets)
        progress = ShareProgress(list(targets))
        async with self.gateway.source(spec.source_account_id, spec.region) as source:
            steps = self._steps(source)
            found = await inspect_image(steps, spec.image_id)
            await self._grant_source_side(steps, spec, found, progress)
        if spec.verify and self.verifier is not None:
            await self.recorder.reach(progress.live, Step.VERIFY)
            passed, unchecked = await self.verifier.verify(spec, found.key_arns, progress.live)
            if unchecked:  # cancelled while verifying: the verified ones are done
                progress.live = [p for p in progress.live if p in unchecked]
                await self._undo(spec, found, progress)
            progress.live = passed
        await self.recorder.reach(progress.live, Step.LEDGER)
        await self.recorder.record_shares(
            [
                ShareRecord(
                    principal=p,
                    kms_key_ids=found.key_arns,
                    snapshot_ids=found.snapshot_ids
                    if spec.share_snapshots and p.is_account
                    else (),
                    grant_ids=progress.grants.get(p, {}),
                )
                for p in progress.live
            ]
        )
        await self.recorder.succeed(progress.live, Step.LEDGER)

    async def _grant_source_side(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, progress: ShareProgress
    ) -> None:
        if found.keys and spec.kms_access is not KmsAccess.NONE:
            await self._checkpoint(steps, spec, found, progress)
            await self.recorder.reach(progress.live, Step.KMS_ACCESS)
            if spec.kms_access is KmsAccess.KEY_POLICY:
                rejected: Rejected = {}
                for key_arn in found.key_arns:
                    rejected |= await steps.grant_key_policy(key_arn, progress.live)
            else:
                accounts = [p for p in progress.live if p.is_account]
                progress.grants, rejected = await steps.create_grants(found.key_arns, accounts)
            await steps.fail_rejected(rejected, Step.KMS_ACCESS)
            progress.drop(rejected)
        if spec.share_snapshots:
            await self._checkpoint(steps, spec, found, progress)
            await self.recorder.reach(progress.live, Step.SNAPSHOTS)
            accounts = [p for p in progress.live if p.is_account]
            rejected = await steps.add_snapshot_permission(found.snapshot_ids, accounts)
            organizations = [p for p in progress.live if not p.is_account]
            if organizations:
                await self.recorder.note(organizations, SNAPSHOT_ORG_NOTE)
            await steps.fail_rejected(rejected, Step.SNAPSHOTS)
            progress.drop(rejected)
        await self._checkpoint(steps, spec, found, progress)
        await self.recorder.reach(progress.live, Step.LAUNCH_PERMISSION)
        rejected = await steps.add_launch_permission(spec.image_id, progress.live)
        await steps.fail_rejected(rejected, Step.LAUNCH_PERMISSION)
        progress.drop(rejected)

    async def _checkpoint(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, progress: ShareProgress
    ) -> None:
        """Between steps: if the job was cancelled, undo what was done and stop."""
        if await self.recorder.cancel_requested():
            await self._undo_with(steps, spec, found, progress)
            raise JobCancelledError

    async def _undo(self, spec: JobSpec, found: Inspection, progress: ShareProgress) -> None:
        async with self.gateway.source(spec.source_account_id, spec.region) as source:
            await self._undo_with(self._steps(source), spec, found, progress)

    async def _undo_with(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, progress: ShareProgress
    ) -> None:
        """Take back, in reverse order, what this job (in this or an earlier attempt) gave the
        live targets, and record them cancelled. A target the ledger already shows as shared
        had its access before this job: it keeps it. So does key access another share needs."""
        earlier = await self.recorder.ledger(progress.live)
        undo = [p for p in progress.live if p not in earlier]
        if undo:
            await steps.remove_launch_permission(spec.image_id, undo)
            accounts = [p for p in undo if p.is_account]
            if spec.share_snapshots:
                await steps.remove_snapshot_permission(found.snapshot_ids, accounts)
            if spec.kms_access is not KmsAccess.NONE:
                ledger = {
                    p: LedgerShare(
                        p, spec.kms_access, found.key_arns, (), progress.grants.get(p, {})
                    )
                    for p in undo
                }
                await release_key_access(
                    steps, self.recorder, found.key_arns, undo, ledger, spec.kms_access
                )
        await self.recorder.cancel(progress.live, CANCELLED_NOTE)
        progress.live = []
