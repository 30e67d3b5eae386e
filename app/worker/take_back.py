"""Taking back what a share gave, in reverse order: launch permission, snapshot permission, key
access. A revoke does it; so does a share for the targets it cannot finish (cancelled, rejected
after a change, or stopped by a job-level failure). What cannot be taken back stays recorded in
the ledger, so that a later revoke finds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.aws.call_errors import AwsCallError
from app.domain.access import ShareRecord
from app.domain.codes import JobFailedError
from app.domain.principals import Principal
from app.domain.types import Step
from app.worker.key_access import KeyRelease, release_key_access
from app.worker.steps import SourceSteps, target_error_code


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one target cannot be finished: recorded once what it was given is taken back."""

    step: Step
    code: str
    message: str

    @classmethod
    def of(cls, step: Step, principal: Principal, error: AwsCallError) -> Refusal:
        message = f"AWS refused {principal.value} in {error.operation}: {error.message}"
        return cls(step, target_error_code(error), message)


@dataclass(frozen=True, slots=True)
class ImageParts:
    """What access to one image is made of, as far as it is known."""

    image_id: str
    exists: bool  # a deregistered image has no launch permission left to take back
    snapshot_ids: tuple[str, ...]
    key_arns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Which parts to take back (a revoke with `kms_access: none` leaves key access)."""

    launch_permission: bool = True
    snapshots: bool = True
    keys: bool = True


@dataclass
class TakeBackOutcome:
    # principal -> the step whose undoing AWS refused, and why (later steps were not tried)
    failed: dict[Principal, tuple[Step, AwsCallError]] = field(default_factory=dict)
    keys: KeyRelease = field(default_factory=KeyRelease)
    # Taking back stopped as a whole (the source failed, e.g. throttled past the budget): what
    # was taken back before is unknown, the ledger rows stay as they were.
    stopped: JobFailedError | None = None

    def refused(self, principal: Principal) -> tuple[Step, AwsCallError] | None:
        return self.failed.get(principal)

    def undone(self, principal: Principal) -> bool:
        return self.stopped is None and principal not in self.failed


async def take_back(
    steps: SourceSteps,
    parts: ImageParts,
    principals: Sequence[Principal],
    what: Withdrawal = Withdrawal(),
) -> TakeBackOutcome:
    """Take back each part from `principals`; a principal whose part AWS refuses keeps the
    later parts too (it would otherwise be left launchable without its key, or the reverse)."""
    outcome = TakeBackOutcome()
    live = list(principals)

    def drop(rejected: dict[Principal, AwsCallError], step: Step) -> None:
        nonlocal live
        for principal, error in rejected.items():
            outcome.failed[principal] = (step, error)
        live = [p for p in live if p not in rejected]

    if what.launch_permission and parts.exists and live:
        drop(await steps.remove_launch_permission(parts.image_id, live), Step.LAUNCH_PERMISSION)
    accounts = [p for p in live if p.is_account]
    if what.snapshots and accounts and parts.snapshot_ids:
        drop(await steps.remove_snapshot_permission(parts.snapshot_ids, accounts), Step.SNAPSHOTS)
    if what.keys and live and parts.key_arns:
        outcome.keys = await release_key_access(steps, parts.key_arns, live)
        drop(outcome.keys.rejected, Step.KMS_ACCESS)
    return outcome


def what_remains(
    principal: Principal,
    row: ShareRecord | None,
    parts: ImageParts,
    what: Withdrawal,
    outcome: TakeBackOutcome,
    *,
    new_row: ShareRecord,
    keys_in_place: Sequence[str] = (),
) -> ShareRecord | None:
    """The ledger row after taking back: None when nothing this image gave remains.

    `new_row` gives job and mode for a row the ledger did not have; `keys_in_place`: keys the
    principal still has access to that were not to be taken back (`kms_access: none`).
    """
    refused = outcome.refused(principal)
    failed_at = refused[0] if refused else None
    not_reached = failed_at in (Step.LAUNCH_PERMISSION, Step.SNAPSHOTS)
    recorded_snapshots = row.snapshot_ids if row else ()
    recorded_keys = row.kms_key_ids if row else ()
    launch = failed_at is Step.LAUNCH_PERMISSION
    snapshots: tuple[str, ...] = ()
    if not_reached and principal.is_account:
        snapshots = recorded_snapshots + parts.snapshot_ids
    elif not what.snapshots:
        snapshots = recorded_snapshots
    keys: tuple[str, ...] = ()
    if not_reached and what.keys:
        keys = recorded_keys + parts.key_arns
    elif failed_at is Step.KMS_ACCESS:
        keys = tuple(outcome.keys.remaining.get(principal, ()))
    elif not what.keys:
        keys = tuple(keys_in_place)
    if not (launch or snapshots or keys):
        return None
    base = row or new_row
    return ShareRecord(
        principal=principal,
        launch_permission=launch,
        snapshot_ids=tuple(dict.fromkeys(snapshots)),
        kms_key_ids=tuple(dict.fromkeys(keys)),
        job_id=base.job_id,
        kms_access=base.kms_access,
    )
