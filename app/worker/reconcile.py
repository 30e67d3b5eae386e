"""A reconcile job (docs/design.md, "Reconcile"): the ledger of one image against AWS.

For each principal the ledger or AWS shows (or each one the job names), it finds what the
ledger says is shared and AWS no longer has (`missing`: launch permission, snapshot permission,
our key-policy statement or a recorded grant), and what AWS shares that the ledger does not
know (`unrecorded`). With `repair` the missing parts are granted again by the share's own
steps (so under the same key locks, and only what is missing is sent); with `prune` the
unrecorded shares are revoked by the revoke's own steps (key access another share needs
stays). Without either it changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from app.aws.gateway import AwsGateway, GrantInfo
from app.config import Settings
from app.domain.access import KeyAccess, ShareRecord
from app.domain.job_spec import JobSpec
from app.domain.key_policy import KeyGrantee, grantee_of
from app.domain.principals import Principal, account
from app.domain.types import Action, KmsAccess, Step
from app.worker.accounts import source_account
from app.worker.inspection import Inspection, inspect_image
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.revoke import RevokeProcedure
from app.worker.share import ShareProcedure
from app.worker.steps import SourceSteps

NOT_REPAIRED_NOTE = (
    "Not repaired: the guardrail no longer allows giving this destination access "
    "(AMISHARE_ALLOWED_DESTINATIONS or the token's own)."
)
UNRECORDED_NOTE = (
    "AWS shares the image with this principal and the ledger does not know it (shared by "
    "hand, or by another tool); left as it is. A reconcile with prune takes it back."
)


@dataclass(frozen=True, slots=True)
class Drift:
    missing: tuple[Step, ...] = ()  # of launch_permission, snapshots, kms_access
    unrecorded: bool = False

    def as_json(self) -> dict[str, Any] | None:
        if not self.missing and not self.unrecorded:
            return None
        return {"missing": [s.value for s in self.missing], "unrecorded": self.unrecorded}


@dataclass(frozen=True, slots=True)
class AwsView:
    """What AWS shows of the image's sharing: launch permission, snapshot permissions, who
    our key-policy statements name, and the grants on each key."""

    launch: tuple[Principal, ...]
    snapshots: dict[str, frozenset[str]]
    grantees: dict[str, frozenset[KeyGrantee]]
    grants: dict[str, tuple[GrantInfo, ...]]

    @property
    def launch_values(self) -> frozenset[str]:
        return frozenset(p.value for p in self.launch)

    def shares_with(self, principal: Principal) -> bool:
        return principal.value in self.launch_values or any(
            principal.value in holders for holders in self.snapshots.values()
        )

    def principals(self) -> list[Principal]:
        """Everyone AWS shows: launch permission first, then snapshot-only accounts."""
        found = list(self.launch)
        known = {p.value for p in found}
        for holders in self.snapshots.values():
            found += [account(a) for a in sorted(holders - known)]
            known |= holders
        return found


class ReconcileProcedure:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        recorder: JobRecorder,
        settings: Settings,
        share: ShareProcedure,
        revoke: RevokeProcedure,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.settings = settings
        self.share = share
        self.revoke = revoke

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        async with source_account(self.gateway, spec, self.settings.retry_policy) as source:
            steps = SourceSteps.for_job(source, self.recorder, self.locks, self.settings, spec)
            found = await inspect_image(steps, spec.image_id, reencrypting=True)
            view = await self._look(steps, found)
            if not targets:  # none named: every principal the ledger or AWS shows
                targets = await self._discover(spec, view)
            await self.recorder.start(targets)
            rows = await self.recorder.shares(targets)
            access = {key: await self.recorder.key_access(key, targets) for key in view.grantees}
        drift = {p: _drift(p, rows.get(p), view, access) for p in targets}
        for principal, found_drift in drift.items():
            await self.recorder.record_drift(principal, found_drift.as_json())
        repaired = await self._repair(spec, drift, rows) if spec.repair else set()
        unrecorded = [p for p, d in drift.items() if d.unrecorded]
        pruned: set[Principal] = set()
        if spec.prune and unrecorded:
            await self.revoke.run(_as_revoke(spec), unrecorded)
            pruned = set(unrecorded)
        elif unrecorded:
            await self.recorder.note(unrecorded, UNRECORDED_NOTE)
        done = [p for p in targets if p not in repaired and p not in pruned]
        await self.recorder.succeed(done, Step.LEDGER)

    async def _look(self, steps: SourceSteps, found: Inspection) -> AwsView:
        source = steps.source
        launch = await steps.read(lambda: source.launch_permissions(found.image.image_id))
        snapshots = {
            s: frozenset(await steps.read(partial(source.snapshot_permissions, s)))
            for s in found.snapshot_ids
        }
        keys = [k.key_arn for k in found.keys if not k.is_aws_managed]
        grantees = {k: frozenset(await steps.read_grantees(k)) for k in keys}
        grants = {k: tuple(await steps.list_grants(k)) for k in keys}
        return AwsView(tuple(launch), snapshots, grantees, grants)

    async def _discover(self, spec: JobSpec, view: AwsView) -> list[Principal]:
        """The ledger's principals of the image, then those only AWS shows (never the source
        account itself), added to the job as its targets."""
        found: dict[str, Principal] = {}
        for principal in [*await self.recorder.shared_principals(), *view.principals()]:
            if principal.value != spec.source_account_id:
                found.setdefault(principal.value, principal)
        targets = list(found.values())
        await self.recorder.add_targets(targets)
        return targets

    async def _repair(
        self,
        spec: JobSpec,
        drift: dict[Principal, Drift],
        rows: dict[Principal, ShareRecord],
    ) -> set[Principal]:
        """Grant again what is missing, through the share's steps, grouped by how each was
        shared (its key route, and whether its snapshots were). A row without launch
        permission is what a revoke left (key access kept): it is reported, not re-shared."""
        guardrails = self.settings.job_guardrails
        groups: dict[tuple[KmsAccess, bool], list[Principal]] = {}
        refused: list[Principal] = []
        for principal, found in drift.items():
            row = rows.get(principal)
            if not found.missing or row is None or not row.launch_permission:
                continue
            if not guardrails.allows_destination(principal, spec.created_by, giving=True):
                refused.append(principal)
                continue
            groups.setdefault((row.kms_access, bool(row.snapshot_ids)), []).append(principal)
        if refused:
            await self.recorder.note(refused, NOT_REPAIRED_NOTE)
        repaired: set[Principal] = set()
        for (kms_access, snapshots), principals in groups.items():
            share_spec = replace(
                spec,
                action=Action.SHARE,
                kms_access=kms_access,
                share_snapshots=snapshots,
                verify=False,
                copy=None,
                reencrypt_key=None,
            )
            await self.share.run(share_spec, principals)
            repaired |= set(principals)
        return repaired


def _as_revoke(spec: JobSpec) -> JobSpec:
    """Pruning revokes every part, key access too (where no other share needs it)."""
    return replace(
        spec,
        action=Action.REVOKE,
        kms_access=KmsAccess.KEY_POLICY,
        share_snapshots=True,
        verify=False,
    )


def _drift(
    principal: Principal,
    row: ShareRecord | None,
    view: AwsView,
    access: dict[str, dict[Principal, KeyAccess]],
) -> Drift:
    if row is None:
        return Drift(unrecorded=view.shares_with(principal))
    missing: list[Step] = []
    if row.launch_permission and principal.value not in view.launch_values:
        missing.append(Step.LAUNCH_PERMISSION)
    if principal.is_account and any(
        principal.value not in view.snapshots.get(s, frozenset())
        for s in row.snapshot_ids
        if s in view.snapshots
    ):
        missing.append(Step.SNAPSHOTS)
    if any(_key_missing(principal, row, key, view, access) for key in row.kms_key_ids):
        missing.append(Step.KMS_ACCESS)
    return Drift(tuple(missing))


def _key_missing(
    principal: Principal,
    row: ShareRecord,
    key_arn: str,
    view: AwsView,
    access: dict[str, dict[Principal, KeyAccess]],
) -> bool:
    if key_arn not in view.grantees:
        return False  # not a key of the image now (or AWS managed): nothing to compare
    recorded = access.get(key_arn, {}).get(principal)
    if recorded is None:
        return row.kms_access is not KmsAccess.NONE  # the ledger says given, and records none
    if recorded.key_policy and grantee_of(principal) not in view.grantees[key_arn]:
        return True
    live = {g.grant_id for g in view.grants.get(key_arn, ())}
    return bool(recorded.grant_ids) and not (set(recorded.grant_ids) & live)
