"""Plans (POST /v1/plans): a job's own procedures run with every change recorded, none made.

The Planner runs the Executor exactly as a worker does, with a PlanLog (each source-side step
records its change there instead of calling AWS) and a PlanRecorder (the ledger is read as the
job would read it; nothing is written). So a plan cannot drift from what the job does: there
is one code path, and a test compares a plan with the job run after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from app.aws.call_errors import AwsCallError
from app.aws.gateway import AwsGateway, Change
from app.config import Settings
from app.db.engine import SessionFactory
from app.db.models import Job
from app.domain.access import KeyAccess, ShareRecord, ShareUpdate
from app.domain.codes import JobFailedError
from app.domain.copies import SourceCopy
from app.domain.job_spec import JobSpec
from app.domain.plans import KeptKeyAccess, PlanLog, PlannedChange
from app.domain.principals import Principal
from app.domain.types import Step
from app.worker.executor import Executor
from app.worker.failures import source_failure
from app.worker.runner import spec_of
from app.worker.sql_recorder import SqlJobRecorder

PLAN_WORKER = "plan"  # a plan holds no lease: the worker ID its ledger reads carry


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    principal: Principal
    region: str
    outcome: str  # "change" | "no_change" | "refused"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a job would do: its job-level error, each target's outcome, every AWS change."""

    error: JobFailedError | None
    targets: list[PlannedTarget]
    changes: list[PlannedChange]
    kept_key_access: list[KeptKeyAccess]
    key_arns: tuple[str, ...]


@dataclass
class _Findings:
    """What the procedures told the recorder while planning, for every Region of the job."""

    refused: dict[tuple[str, str], str] = field(default_factory=dict)  # (region, principal)
    failed_regions: dict[str, str] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)  # region -> key ARNs


class _NoLocks:
    """A plan edits no key policy: it takes no key lock (and so never waits for a job)."""

    def hold(self, name: str) -> AbstractAsyncContextManager[None]:
        return _nothing()


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class PlanRecorder:
    """A JobRecorder that reads the ledger as the job would and writes nothing."""

    def __init__(self, reads: SqlJobRecorder, findings: _Findings) -> None:
        self.reads = reads
        self.findings = findings

    @property
    def region(self) -> str:
        return self.reads.spec.region

    def in_region(self, spec: JobSpec) -> PlanRecorder:
        return PlanRecorder(self.reads.in_region(spec), self.findings)

    # Targets: only refusals matter to a plan.
    async def start(self, principals: Sequence[Principal]) -> None:
        return None

    async def reach(self, principals: Sequence[Principal], step: Step) -> None:
        return None

    async def fail(
        self, principals: Sequence[Principal], step: Step, code: str, message: str
    ) -> None:
        for principal in principals:
            self.findings.refused.setdefault((self.region, principal.value), f"{code}: {message}")

    async def succeed(self, principals: Sequence[Principal], step: Step) -> None:
        return None

    async def note(self, principals: Sequence[Principal], note: str) -> None:
        return None

    async def cancel(self, principals: Sequence[Principal], note: str) -> None:
        return None

    async def fail_unfinished(self, code: str, message: str) -> None:
        self.findings.failed_regions.setdefault(self.region, f"{code}: {message}")

    async def cancel_requested(self) -> bool:
        return False

    # The audit trail: a plan makes no change to audit.
    async def changed(self, *changes: Change) -> None:
        return None

    async def change_failed(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        code: str,
        message: str,
        request_id: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        return None

    # The ledger: read as the job reads it, never written.
    async def shares(self, principals: Sequence[Principal]) -> dict[Principal, ShareRecord]:
        return await self.reads.shares(principals)

    async def shared_principals(self) -> list[Principal]:
        return await self.reads.shared_principals()

    async def add_targets(self, principals: Sequence[Principal]) -> None:
        return None

    async def record_drift(self, principal: Principal, drift: Mapping[str, Any] | None) -> None:
        return None

    async def organization_shares(self) -> list[str]:
        return await self.reads.organization_shares()

    async def record_shares(self, updates: Sequence[ShareUpdate]) -> None:
        return None

    async def complete_shares(self, principals: Sequence[Principal]) -> None:
        return None

    async def settle_shares(
        self, remaining: Sequence[ShareRecord], gone: Sequence[Principal]
    ) -> None:
        return None

    async def sharing(self, image_id: str, source_image_id: str | None) -> None:
        await self.reads.ledger_of(image_id, source_image_id)

    async def ledger_of(self, image_id: str, source_image_id: str | None) -> None:
        await self.reads.ledger_of(image_id, source_image_id)

    async def record_keys(self, key_arns: Sequence[str]) -> None:
        known = self.findings.keys.setdefault(self.region, [])
        known += [k for k in key_arns if k not in known]

    async def source_copy(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> SourceCopy | None:
        return await self.reads.source_copy(source_image_id, source_region, region, kms_key_id)

    async def record_source_copy(self, copy: SourceCopy) -> None:
        return None

    async def source_copies_of(self, image_id: str, region: str) -> list[str]:
        return await self.reads.source_copies_of(image_id, region)

    async def copies(self, principals: Sequence[Principal]) -> dict[Principal, str]:
        return {}  # no job: none of its copies exist

    async def record_copy(self, principal: Principal, image_id: str) -> None:
        return None

    async def key_access(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, KeyAccess]:
        return await self.reads.key_access(key_arn, principals)

    async def record_key_access(
        self,
        key_arn: str,
        principals: Sequence[Principal],
        *,
        key_policy: bool = False,
        grant_ids: Mapping[Principal, str] | None = None,
    ) -> None:
        return None

    async def forget_key_access(self, key_arn: str, principals: Sequence[Principal]) -> None:
        return None

    async def key_needed_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, list[str]]:
        return await self.reads.key_needed_elsewhere(key_arn, principals)


class Planner:
    def __init__(self, sessions: SessionFactory, gateway: AwsGateway, settings: Settings) -> None:
        self.sessions = sessions
        self.gateway = gateway
        self.settings = settings

    async def plan(
        self,
        job: Job,
        targets: Sequence[tuple[Principal, str]],
        refused: Mapping[str, str],
    ) -> Plan:
        """Plan `job` (built, not stored) for its (principal, Region) targets; `refused`:
        principals the guardrail refuses, with why (they are planned as refused)."""
        spec = spec_of(job)
        log = PlanLog()
        findings = _Findings()
        for principal, region in targets:
            if principal.value in refused:
                findings.refused[(region, principal.value)] = refused[principal.value]
        by_region: dict[str, list[Principal]] = {}
        for principal, region in targets:
            if principal.value not in refused:
                by_region.setdefault(region, []).append(principal)
        recorder = PlanRecorder(SqlJobRecorder(self.sessions, spec, PLAN_WORKER), findings)
        executor = Executor(self.gateway, _NoLocks(), self.settings, plan=log)
        try:
            error = await executor.execute(spec, by_region, recorder) if by_region else None
        except AwsCallError as failure:
            error = source_failure(failure)
        changes = [
            _in_region(change, region)
            for region in spec.all_regions
            for change in log.for_region(region).changes
        ]
        outcomes = [
            _outcome(principal, region, findings, log.for_region(region), error)
            for principal, region in targets
        ]
        kept = [k for r in spec.all_regions for k in log.for_region(r).kept_key_access]
        keys = tuple(dict.fromkeys(k for r in spec.all_regions for k in findings.keys.get(r, [])))
        return Plan(error, outcomes, changes, kept, keys)


def _in_region(change: PlannedChange, region: str) -> PlannedChange:
    if change.region is None:
        change.region = region
    return change


def _outcome(
    principal: Principal,
    region: str,
    findings: _Findings,
    log: PlanLog,
    error: JobFailedError | None,
) -> PlannedTarget:
    refusal = findings.refused.get((region, principal.value))
    if refusal is not None:
        return PlannedTarget(principal, region, "refused", refusal)
    failed = findings.failed_regions.get(region)
    if failed is not None or error is not None:
        reason = failed or (f"{error.code}: {error.message}" if error else None)
        return PlannedTarget(principal, region, "refused", reason)
    stopped = log.stopped.get(region)
    if stopped is not None:  # the copy there is itself a change: so is what is shared in it
        return PlannedTarget(principal, region, "change", stopped)
    if any(principal.value in change.principals for change in log.changes):
        return PlannedTarget(principal, region, "change")
    return PlannedTarget(principal, region, "no_change")
