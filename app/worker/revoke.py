"""A revoke job (docs/design.md, "A revoke job"): launch permission, then snapshots, then key
access — and key access only where nothing else still needs it.

A revoke looks at AWS as well as at the ledger: a principal is "never shared" only when the
ledger has no row for it and AWS shows nothing of it either (launch permission, snapshot
permission, our key-policy statement, a grant of ours or one it derived from ours). Whatever
`kms_access` a revoke names, it takes back every way in to the keys (`none` leaves key access
alone, and the ledger row stays to say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from app.aws.gateway import AwsGateway, ImageInfo
from app.config import Settings
from app.domain.access import ShareRecord
from app.domain.job_spec import JobSpec
from app.domain.key_policy import grantee_of
from app.domain.plans import KeptKeyAccess, PlanLog
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step
from app.worker.accounts import source_account
from app.worker.inspection import key_arns_of_image, require_owner
from app.worker.key_access import grants_to_revoke
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.steps import SourceSteps
from app.worker.take_back import (
    ImageParts,
    Refusal,
    TakeBackOutcome,
    Withdrawal,
    take_back,
    what_remains,
)
from app.worker.verification import Unshared

NEVER_SHARED_NOTE = "Was not shared with this principal: nothing to revoke."
KEYS_LEFT_NOTE = (
    "Key access left in place (kms_access 'none'): the ledger keeps this share's row, without "
    "launch permission, until a revoke takes the key access back."
)


@dataclass
class Survey:
    """What AWS shows of these principals on the image, its snapshots and its keys."""

    found: set[Principal] = field(default_factory=set)
    # principal -> keys it can still use through something the service gave
    keys: dict[Principal, list[str]] = field(default_factory=dict)


class RevokeProcedure:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        recorder: JobRecorder,
        settings: Settings,
        unshared: Unshared | None = None,
        plan: PlanLog | None = None,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.settings = settings
        self.unshared = unshared
        self.plan = plan  # planning: changes recorded here, none made

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        """Revoke the image, and the copies of it the service made in the Region (a
        re-encrypted copy is what was shared in its stead; in another of the job's Regions,
        the image's copy there is all there is)."""
        await self.recorder.start(targets)
        async with source_account(self.gateway, spec, self.settings.retry_policy) as source:
            steps = SourceSteps.for_job(
                source, self.recorder, self.locks, self.settings, spec, self.plan
            )
            copies = await self.recorder.source_copies_of(spec.image_id, spec.region)
            images = [] if spec.source_region else [spec]
            images += [replace(spec, image_id=c, source_image_id=spec.image_id) for c in copies]
            never = set(targets)
            refused: set[Principal] = set()
            revoked: dict[str, list[Principal]] = {}
            for image_spec in images:
                await self.recorder.ledger_of(image_spec.image_id, image_spec.source_image_id)
                shared, failed = await self._revoke_image(steps, image_spec, targets)
                await self._note_organizations(shared - failed)
                never -= shared
                refused |= failed
                revoked[image_spec.image_id] = [p for p in targets if p in shared - failed]
        untouched = [p for p in targets if p in never]
        if untouched:
            await self.recorder.note(untouched, NEVER_SHARED_NOTE)
        refused |= await self._confirm_unshared(spec, revoked)
        await self.recorder.succeed([p for p in targets if p not in refused], Step.LEDGER)

    async def _note_organizations(self, revoked: set[Principal]) -> None:
        """An account revoked alone may stay able to launch the image through an organization
        or OU it is in (AWS shares with their members; which accounts those are, only AWS
        Organizations knows)."""
        accounts = [p for p in revoked if p.is_account]
        organizations = await self.recorder.organization_shares() if accounts else []
        if organizations:
            await self.recorder.note(
                accounts,
                "The image stays launchable for this account if it is in "
                f"{', '.join(sorted(organizations))}: that share remains.",
            )

    async def _confirm_unshared(
        self, spec: JobSpec, revoked: dict[str, list[Principal]]
    ) -> set[Principal]:
        """With a destination role: from each destination, the image is gone."""
        if not spec.verify or self.unshared is None or self.plan is not None:
            return set()
        failed: set[Principal] = set()
        for image_id, principals in revoked.items():
            accounts = [p for p in principals if p.is_account]
            await self.recorder.reach(accounts, Step.VERIFY)
            image_spec = replace(spec, image_id=image_id)
            if accounts and await self._organization_covers(image_spec):
                continue  # an organization share may well keep it visible: noted above
            found = await self.unshared.still_visible(image_spec, accounts)
            for principal, failure in found.items():
                await self.recorder.fail([principal], Step.VERIFY, failure.code, failure.message)
            failed |= set(found)
        return failed

    async def _organization_covers(self, spec: JobSpec) -> bool:
        await self.recorder.ledger_of(spec.image_id, spec.source_image_id)
        return bool(await self.recorder.organization_shares())

    async def _revoke_image(
        self, steps: SourceSteps, spec: JobSpec, targets: Sequence[Principal]
    ) -> tuple[set[Principal], set[Principal]]:
        """(principals it was shared with, principals whose revoke AWS refused)."""
        rows = await self.recorder.shares(targets)
        source = steps.source
        image = await steps.read(lambda: source.describe_image(spec.image_id))
        if image is not None:
            require_owner(image, source.account_id, "revoke its sharing")
        parts = await self._parts(steps, spec, image, rows)
        await self.recorder.record_keys(parts.key_arns)
        survey = await self._survey(steps, parts, targets)
        live = [p for p in targets if p in rows or p in survey.found]
        what = Withdrawal(
            launch_permission=True,
            snapshots=spec.share_snapshots,
            keys=spec.kms_access is not KmsAccess.NONE,
        )
        await self.recorder.reach(live, Step.LAUNCH_PERMISSION)
        outcome = await take_back(steps, parts, live, what)
        if self.plan is not None:
            self.plan.kept_key_access += [
                KeptKeyAccess(principal.value, key_arn, tuple(by))
                for principal, keys in outcome.keys.kept.items()
                for key_arn, by in keys.items()
            ]
            return set(live), set()
        await self._record(spec, parts, what, outcome, rows, survey, live)
        return set(live), {p for p in live if outcome.refused(p)}

    async def _parts(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        image: ImageInfo | None,
        rows: dict[Principal, ShareRecord],
    ) -> ImageParts:
        """The image's snapshots and keys, from AWS and from the ledger (the image may be gone,
        or have been re-registered on other snapshots since it was shared)."""
        snapshots = list(image.snapshot_ids if image else ())
        keys = list(await key_arns_of_image(steps, image)) if image is not None else []
        for row in rows.values():
            snapshots += row.snapshot_ids
            keys += row.kms_key_ids
        return ImageParts(
            spec.image_id,
            image is not None,
            tuple(sorted(set(snapshots))),
            tuple(sorted(set(keys))),
        )

    async def _survey(
        self, steps: SourceSteps, parts: ImageParts, targets: Sequence[Principal]
    ) -> Survey:
        survey = Survey()
        values = {p.value: p for p in targets}
        accounts = [p for p in targets if p.is_account]
        if parts.exists:
            shown = await steps.read(lambda: steps.source.launch_permissions(parts.image_id))
            survey.found |= {values[p.value] for p in shown if p.value in values}
        for snapshot_id in parts.snapshot_ids if accounts else ():
            holders = await steps.read(partial(steps.source.snapshot_permissions, snapshot_id))
            survey.found |= {values[a] for a in holders if a in values}
        for key_arn in parts.key_arns:
            grantees = await steps.read_grantees(key_arn)  # a statement of ours changed: stop
            recorded = await self.recorder.key_access(key_arn, targets)
            grants = await steps.list_grants(key_arn) if accounts else []
            with_grant = {g.principal for g in grants_to_revoke(key_arn, accounts, grants, {})}
            for principal in targets:
                if (
                    grantee_of(principal) in grantees
                    or principal in recorded
                    or (principal in with_grant)
                ):
                    survey.found.add(principal)
                    survey.keys.setdefault(principal, []).append(key_arn)
        return survey

    async def _record(
        self,
        spec: JobSpec,
        parts: ImageParts,
        what: Withdrawal,
        outcome: TakeBackOutcome,
        rows: dict[Principal, ShareRecord],
        survey: Survey,
        live: Sequence[Principal],
    ) -> None:
        """Fail what AWS refused, note what stays, and leave the ledger saying what remains."""
        for principal, (step, error) in outcome.failed.items():
            refusal = Refusal.of(step, principal, error)
            message = f"{refusal.message} What remains is recorded in the ledger; retry the job."
            await self.recorder.fail([principal], step, refusal.code, message)
        for principal, kept in outcome.keys.kept.items():
            needs = "; ".join(f"{key} by {', '.join(by)}" for key, by in sorted(kept.items()))
            await self.recorder.note(
                [principal], f"Key access kept where another share still needs it: {needs}."
            )
        remaining: list[ShareRecord] = []
        gone: list[Principal] = []
        for principal in live:
            new_row = ShareRecord(principal, False, (), (), spec.job_id, spec.kms_access)
            left = what_remains(
                principal,
                rows.get(principal),
                parts,
                what,
                outcome,
                new_row=new_row,
                keys_in_place=survey.keys.get(principal, ()) if not what.keys else (),
            )
            if left is None:
                gone.append(principal)
            else:
                remaining.append(left)
        if not what.keys:
            await self.recorder.note(
                [r.principal for r in remaining if r.kms_key_ids], KEYS_LEFT_NOTE
            )
        await self.recorder.settle_shares(remaining, gone)
