"""A share job (docs/design.md, "A share job, step by step").

Source-side calls are one per key, per snapshot and per batch of principals, whatever the number
of destinations; destination-side work runs concurrently under a bound. Every step reads the
current state and applies the difference, so running it again after a crash is harmless.

Every change is recorded in the ledger as it lands. A target that cannot be finished (AWS
refuses it at a later step, verification fails, the job is cancelled or fails as a whole) has
what this job gave it taken back; what cannot be taken back stays in the ledger for a revoke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from app.aws.call_errors import AwsCallError
from app.aws.gateway import AwsGateway, ImageInfo, SourceAccount
from app.config import Settings
from app.domain.access import ShareRecord, ShareUpdate
from app.domain.codes import JobErrorCode, JobFailedError
from app.domain.job_spec import JobSpec
from app.domain.plans import PlanLog, PlannedChange
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step
from app.worker.accounts import source_account
from app.worker.copies import CopyCancelledError, CopyFailedError, copy_in_source
from app.worker.destination_copies import DestinationCopies
from app.worker.failures import source_failure
from app.worker.inspection import Inspection, inspect_image, require_owner
from app.worker.key_access import grant_key_access
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.steps import Rejected, SourceSteps
from app.worker.take_back import (
    ImageParts,
    Refusal,
    TakeBackOutcome,
    Withdrawal,
    take_back,
    what_remains,
)
from app.worker.verification import Verifier

SNAPSHOT_ORG_NOTE = (
    "Snapshots not shared: AWS has no organization or OU form of createVolumePermission. "
    "Launching works; copying the AMI needs snapshot access granted per account."
)
CANCELLED_NOTE = "Cancelled before this destination was finished; changes made for it were undone."
UNDONE_NOTE = "What this job had given it was taken back."
COPY_NOTE = (
    " The image is shared with it (recorded in the ledger); only its copy is missing: retry "
    "the job to copy again."
)


@dataclass
class TargetsInFlight:
    """The targets still going, those refused on the way (not yet taken back), and those that
    had the share before this job (from another job): nothing of theirs is ever taken back."""

    live: list[Principal]
    had_it: set[Principal] = field(default_factory=set)
    refused: dict[Principal, Refusal] = field(default_factory=dict)
    # The ledger's rows as this attempt began (an earlier attempt's included): only what the
    # ledger recorded and AWS shows counts as given already.
    recorded: dict[Principal, ShareRecord] = field(default_factory=dict)

    def refuse(self, rejected: Rejected, step: Step) -> None:
        for principal, error in rejected.items():
            self.refused[principal] = Refusal.of(step, principal, error)
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
        settings: Settings,
        plan: PlanLog | None = None,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.verifier = verifier
        self.settings = settings
        # Planning: the procedure runs with every change recorded here instead of made.
        self.plan = plan

    def _steps(self, source: SourceAccount, spec: JobSpec) -> SourceSteps:
        return SourceSteps.for_job(
            source, self.recorder, self.locks, self.settings, spec, self.plan
        )

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        try:
            await self._run(spec, targets)
        except _PlanStopsError as stop:
            assert self.plan is not None
            self.plan.stopped[spec.region] = str(stop)

    async def _run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        await self.recorder.start(targets)
        async with source_account(self.gateway, spec, self.settings.retry_policy) as source:
            steps = self._steps(source, spec)
            if spec.source_region is not None:  # another of the job's Regions
                spec, found = await self._regional_image(steps, spec, targets)
            else:
                reencrypting = spec.reencrypt_key is not None
                found = await inspect_image(steps, spec.image_id, reencrypting=reencrypting)
                spec, found = await self._shared_image(steps, spec, found, targets)
            await self.recorder.record_keys(found.key_arns)
            before = await self.recorder.shares(targets)
            had_it = {
                p for p, r in before.items() if r.launch_permission and r.job_id != spec.job_id
            }
            flight = TargetsInFlight(list(targets), had_it, recorded=before)
            if spec.kms_access is KmsAccess.KEY_POLICY:
                for key_arn in found.key_arns:  # a statement of ours someone changed: stop now
                    await steps.read_grantees(key_arn)
            try:
                await self._grant_source_side(steps, spec, found, flight)
                await self._verify(steps, spec, found, flight)
                await self._copy(steps, spec, found, flight)
            except JobFailedError:
                if self.plan is not None:
                    raise  # a plan changed nothing: nothing to take back
                # Nothing more will be done for any target: take back what each was given.
                await self._take_back_refused(steps, spec, found, flight)
                await self._take_back_live(steps, spec, found, flight, note=UNDONE_NOTE)
                raise
            await self._take_back_refused(steps, spec, found, flight)
        await self.recorder.reach(flight.live, Step.LEDGER)
        await self.recorder.complete_shares(flight.live)
        await self.recorder.succeed(flight.live, Step.LEDGER)

    async def _regional_image(
        self, steps: SourceSteps, spec: JobSpec, targets: Sequence[Principal]
    ) -> tuple[JobSpec, Inspection]:
        """In another of the job's Regions the job shares the source's copy of the image
        there, encrypted with that Region's key: made once per (image, Region, key)."""
        assert spec.source_region is not None
        key_id = spec.region_key
        if key_id is None:
            raise JobFailedError(
                JobErrorCode.REGION_KEY_UNAVAILABLE,
                f"No key for {spec.region} in region_kms_key_ids: the copy there needs one.",
            )
        await self._usable_key(steps, key_id, JobErrorCode.REGION_KEY_UNAVAILABLE, spec.region)
        original = await self._original_image(spec)
        copy_id = await self._copy_in_source(steps, spec, original, key_id, targets)
        await self.recorder.sharing(copy_id, original.image_id)
        shared = replace(spec, image_id=copy_id, source_image_id=original.image_id)
        return shared, await inspect_image(steps, copy_id)

    async def _original_image(self, spec: JobSpec) -> ImageInfo:
        """The image in the job's own Region, as the source sees it (its tags and name)."""
        assert spec.source_region is not None
        home = replace(spec, region=spec.source_region, source_region=None)
        async with source_account(self.gateway, home, self.settings.retry_policy) as source:
            steps = self._steps(source, home)
            image = await steps.read(lambda: source.describe_image(spec.image_id))
            if image is None:
                raise JobFailedError(
                    JobErrorCode.IMAGE_NOT_FOUND,
                    f"{spec.image_id} does not exist in account {source.account_id} in "
                    f"{spec.source_region}.",
                )
            require_owner(image, source.account_id, "share it")
            return image

    async def _usable_key(
        self, steps: SourceSteps, key_id: str, code: JobErrorCode, region: str
    ) -> None:
        """A customer managed key of the source, enabled, to encrypt a copy with."""
        key = await steps.read(lambda: steps.source.describe_own_key(key_id))
        if key is None or key.is_aws_managed or not key.enabled:
            state = (
                "does not exist"
                if key is None
                else ("is AWS managed" if key.is_aws_managed else "is not enabled")
            )
            raise JobFailedError(
                code,
                f"The key {key_id} {state} in the source account in {region}: name an "
                "enabled customer managed key of that account and Region.",
            )

    async def _copy_in_source(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        original: ImageInfo,
        key_id: str,
        targets: Sequence[Principal],
    ) -> str:
        source_region = spec.source_region or spec.region
        if self.plan is not None:
            return await self._planned_copy(steps, spec, original, key_id)
        try:
            return await copy_in_source(
                steps.source,
                self.recorder,
                original,
                source_region,
                spec.region,
                key_id,
                self.settings,
                self.recorder.cancel_requested,
            )
        except CopyCancelledError:
            await self.recorder.cancel(targets, CANCELLED_NOTE)
            raise JobCancelledError from None
        except CopyFailedError as failed:
            raise JobFailedError(
                JobErrorCode.COPY_FAILED,
                f"The copy of {original.image_id} in {spec.region} under {key_id} failed: "
                f"{failed}.",
            ) from failed
        except AwsCallError as error:
            raise source_failure(error) from error

    async def _planned_copy(
        self, steps: SourceSteps, spec: JobSpec, original: ImageInfo, key_id: str
    ) -> str:
        """A plan uses the copy made before when it is there; otherwise the copy is a change,
        and what is shared in it cannot be planned until it exists."""
        assert self.plan is not None
        source_region = spec.source_region or spec.region
        made = await self.recorder.source_copy(
            original.image_id, source_region, spec.region, key_id
        )
        if made is not None and made.image_id is not None:
            image = await steps.read(lambda: steps.source.own_image(made.image_id or ""))
            if image is not None and image.state == "available":
                return image.image_id
        self.plan.add(
            PlannedChange(
                "CopyImage", original.image_id, account=steps.source.account_id, region=spec.region
            )
        )
        raise _PlanStopsError(
            f"the source copies {original.image_id} into {spec.region} under {key_id} first; "
            "its key policy, snapshots and launch permission are then granted as for the image"
        )

    async def _shared_image(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        found: Inspection,
        targets: Sequence[Principal],
    ) -> tuple[JobSpec, Inspection]:
        """The image the job shares: the one asked for, or (under an AWS-managed key, with
        `reencrypt`) its copy in the source re-encrypted with the customer-managed key, made
        once and reused by later jobs."""
        if not found.under_aws_managed_key or spec.reencrypt_key is None:
            await self.recorder.sharing(spec.image_id, None)
            return spec, found
        key_id = spec.reencrypt_key
        await self._usable_key(steps, key_id, JobErrorCode.REENCRYPT_KEY_UNAVAILABLE, spec.region)
        copy_id = await self._copy_in_source(steps, spec, found.image, key_id, targets)
        await self.recorder.sharing(copy_id, spec.image_id)
        return replace(spec, image_id=copy_id, source_image_id=spec.image_id), (
            await inspect_image(steps, copy_id)
        )

    async def _copy(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, flight: TargetsInFlight
    ) -> None:
        """Each destination copies the shared image. A copy that fails fails its target
        alone, and the share stays (recorded): only the copy is missing."""
        if spec.copy is None or not flight.live:
            return
        if self.plan is not None:
            await self._plan_copies(spec, found, flight)
            return
        await self._checkpoint(steps, spec, found, flight)
        await self.recorder.reach(flight.live, Step.COPY)
        outcome = await DestinationCopies(self.gateway, self.recorder, self.settings).copy(
            spec, found.image, flight.live
        )
        key = spec.copy.kms_key_id
        await self.recorder.record_shares(
            [
                ShareUpdate(p, copied_image_id=i, copy_kms_key_id=key)
                for p, i in outcome.copied.items()
            ]
        )
        for principal, refusal in outcome.refused.items():
            await self.recorder.fail(
                [principal], Step.COPY, refusal.code, refusal.message + COPY_NOTE
            )
        refused = set(outcome.refused)
        if outcome.cancelled:
            finished = [p for p in flight.live if p not in refused and p not in outcome.cancelled]
            flight.live = list(outcome.cancelled)
            await self._cancel(steps, spec, found, flight)
            flight.live = finished
        else:
            flight.live = [p for p in flight.live if p not in refused]

    async def _plan_copies(self, spec: JobSpec, found: Inspection, flight: TargetsInFlight) -> None:
        """Each destination copies the image, but where the ledger has its copy under the same
        key already (a later share reuses it)."""
        assert self.plan is not None and spec.copy is not None
        accounts = [p for p in flight.live if p.is_account]
        rows = await self.recorder.shares(accounts)
        for principal in accounts:
            row = rows.get(principal)
            if row and row.copied_image_id and row.copy_kms_key_id == spec.copy.kms_key_id:
                continue
            self.plan.add(
                PlannedChange(
                    "CopyImage", found.image.image_id, account=principal.value, region=spec.region
                )
            )

    async def _grant_source_side(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, flight: TargetsInFlight
    ) -> None:
        if found.keys and spec.kms_access is not KmsAccess.NONE:
            await self._checkpoint(steps, spec, found, flight)
            await self.recorder.reach(flight.live, Step.KMS_ACCESS)
            await self._record(flight.live, kms_key_ids=found.key_arns)
            rejected = await grant_key_access(steps, found.key_arns, flight.live, spec.kms_access)
            flight.refuse(rejected, Step.KMS_ACCESS)
        if spec.share_snapshots:
            await self._checkpoint(steps, spec, found, flight)
            await self.recorder.reach(flight.live, Step.SNAPSHOTS)
            accounts = [p for p in flight.live if p.is_account]
            # Recorded before the call: if it lands and the worker dies, the ledger knows.
            await self._record(accounts, snapshot_ids=found.snapshot_ids)
            had = {p: r.snapshot_ids for p, r in flight.recorded.items()}
            rejected = await steps.add_snapshot_permission(found.snapshot_ids, accounts, had)
            organizations = [p for p in flight.live if not p.is_account]
            if organizations:
                await self.recorder.note(organizations, SNAPSHOT_ORG_NOTE)
            flight.refuse(rejected, Step.SNAPSHOTS)
        await self._checkpoint(steps, spec, found, flight)
        await self.recorder.reach(flight.live, Step.LAUNCH_PERMISSION)
        await self._record(flight.live, launch_permission=True)
        launchable = {p for p, r in flight.recorded.items() if r.launch_permission}
        rejected = await steps.add_launch_permission(spec.image_id, flight.live, launchable)
        flight.refuse(rejected, Step.LAUNCH_PERMISSION)

    async def _verify(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, flight: TargetsInFlight
    ) -> None:
        if not spec.verify or self.verifier is None or self.plan is not None:
            return
        await self.recorder.reach(flight.live, Step.VERIFY)
        passed, failed, unchecked = await self.verifier.verify(spec, found.key_arns, flight.live)
        for principal, failure in failed.items():
            flight.refused[principal] = Refusal(Step.VERIFY, failure.code, failure.message)
        if unchecked:  # cancelled while verifying: the verified ones are done
            flight.live = [p for p in flight.live if p in unchecked]
            await self._cancel(steps, spec, found, flight)
        flight.live = passed

    async def _record(
        self,
        principals: Sequence[Principal],
        *,
        launch_permission: bool | None = None,
        snapshot_ids: tuple[str, ...] = (),
        kms_key_ids: tuple[str, ...] = (),
    ) -> None:
        await self.recorder.record_shares(
            [ShareUpdate(p, launch_permission, snapshot_ids, kms_key_ids) for p in principals]
        )

    async def _checkpoint(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, flight: TargetsInFlight
    ) -> None:
        """Between steps: if the job was cancelled, undo what was done and stop."""
        if await self.recorder.cancel_requested():
            await self._cancel(steps, spec, found, flight)
            await self._take_back_refused(steps, spec, found, flight)
            raise JobCancelledError

    async def _cancel(
        self, steps: SourceSteps, spec: JobSpec, found: Inspection, flight: TargetsInFlight
    ) -> None:
        cancelled = list(flight.live)
        await self._take_back_live(steps, spec, found, flight, note=None)
        await self.recorder.cancel(cancelled, CANCELLED_NOTE)
        flight.live = []

    async def _take_back_live(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        found: Inspection,
        flight: TargetsInFlight,
        *,
        note: str | None,
    ) -> None:
        undo = [p for p in flight.live if p not in flight.had_it]
        if undo:
            outcome = await self._take_back(steps, spec, found, undo, self._parts(spec))
            if note:
                await self.recorder.note([p for p in undo if outcome.undone(p)], note)

    async def _take_back_refused(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        found: Inspection,
        flight: TargetsInFlight,
    ) -> None:
        """Take back what each refused target was given before its refusal, then fail it. A
        target that had the share before this job keeps it (nothing of it is taken back)."""
        given = self._parts(spec)
        by_step: dict[Step, list[Principal]] = {}
        for principal, refusal in flight.refused.items():
            by_step.setdefault(refusal.step, []).append(principal)
        for step, principals in by_step.items():
            # Refused at a step: that step's change never landed for it (a launch permission
            # AWS refused was not given), every earlier one did.
            what = Withdrawal(
                launch_permission=step is Step.VERIFY,
                snapshots=given.snapshots and step is not Step.KMS_ACCESS,
                keys=given.keys,
            )
            undo = [p for p in principals if p not in flight.had_it]
            outcome = await self._take_back(steps, spec, found, undo, what) if undo else None
            for principal in principals:
                refusal = flight.refused[principal]
                message = refusal.message + _undo_note(principal, flight.had_it, outcome)
                await self.recorder.fail([principal], refusal.step, refusal.code, message)
        flight.refused = {}

    def _parts(self, spec: JobSpec) -> Withdrawal:
        """Everything this job gives: what taking it all back means."""
        return Withdrawal(
            launch_permission=True,
            snapshots=spec.share_snapshots,
            keys=spec.kms_access is not KmsAccess.NONE,
        )

    async def _take_back(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        found: Inspection,
        principals: Sequence[Principal],
        what: Withdrawal,
    ) -> TakeBackOutcome:
        parts = ImageParts(spec.image_id, True, found.snapshot_ids, found.key_arns)
        rows = await self.recorder.shares(principals)
        try:
            outcome = await take_back(steps, parts, principals, what)
        except JobFailedError as stopped:
            # The other targets are still taken back; these keep their rows as they were
            # (written before each change landed), for a revoke.
            return TakeBackOutcome(stopped=stopped)
        remaining: list[ShareRecord] = []
        gone: list[Principal] = []
        for principal in principals:
            new_row = ShareRecord(principal, False, (), (), spec.job_id, spec.kms_access)
            left = what_remains(
                principal, rows.get(principal), parts, what, outcome, new_row=new_row
            )
            if left is None:
                gone.append(principal)
            else:
                remaining.append(left)
        await self.recorder.settle_shares(remaining, gone)
        return outcome


def _undo_note(
    principal: Principal, had_it: set[Principal], outcome: TakeBackOutcome | None
) -> str:
    if principal in had_it or outcome is None:
        return " It keeps the share it had before this job."
    if outcome.stopped is not None:
        return (
            f" Taking back what it was given stopped ({outcome.stopped.code}); what remains is "
            "recorded in the ledger, for a revoke to take back."
        )
    left = outcome.refused(principal)
    if left is None:
        return " " + UNDONE_NOTE
    step, error = left
    return (
        f" Taking back what it was given failed at {step} ({error.code}); what remains is "
        "recorded in the ledger, for a revoke to take back."
    )


class _PlanStopsError(Exception):
    """Planning a Region stops at a copy that does not exist yet."""
