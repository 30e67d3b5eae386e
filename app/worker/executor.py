"""Runs one claimed job to its end: builds the procedure for its action and reports the outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from app.aws.gateway import AwsGateway
from app.config import Settings
from app.domain.codes import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.job_spec import JobSpec
from app.domain.plans import PlanLog
from app.domain.principals import Principal
from app.domain.types import Action, Step
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.reconcile import ReconcileProcedure
from app.worker.revoke import RevokeProcedure
from app.worker.share import JobCancelledError, ShareProcedure
from app.worker.verification import Unshared, Verifier

log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        settings: Settings,
        plan: PlanLog | None = None,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.settings = settings
        # Planning: the same procedures, every change recorded here instead of made.
        self.plan = plan

    async def execute(
        self,
        spec: JobSpec,
        targets: Mapping[str, Sequence[Principal]],
        recorder: JobRecorder,
    ) -> JobFailedError | None:
        """Run the job's unfinished targets, by Region (`targets`: Region -> principals), all
        Regions at once. A job-level failure is returned, not raised: when the job has other
        Regions, a Region that fails as a whole fails its own targets, and the job only when
        every Region failed."""
        guardrails = self.settings.job_guardrails
        if not guardrails.allows_source(spec.source_account_id, spec.created_by):
            return JobFailedError(
                JobErrorCode.SOURCE_NOT_ALLOWED,
                f"The source account {spec.source_account_id} is no longer among the allowed "
                "sources (AMISHARE_ALLOWED_SOURCES or the token's own); nothing was changed.",
            )
        runs = [
            self._run_region(spec.in_region(region), principals, recorder)
            for region, principals in targets.items()
        ]
        failures = await asyncio.gather(*runs)
        failed = [f for f in failures if f is not None]
        if failed and len(failed) == len(failures) and _same(failed):
            return failed[0]
        return None

    async def _run_region(
        self, spec: JobSpec, targets: Sequence[Principal], job_recorder: JobRecorder
    ) -> JobFailedError | None:
        recorder = job_recorder.in_region(spec)
        giving = spec.action is Action.SHARE
        guardrails = self.settings.job_guardrails
        # A reconcile checks its repairs itself: finding drift is fine for any destination.
        refused = [
            p
            for p in targets
            if spec.action is not Action.RECONCILE
            and not guardrails.allows_destination(p, spec.created_by, giving=giving)
        ]
        if refused:
            await recorder.fail(
                refused,
                Step.PENDING,
                TargetErrorCode.DESTINATION_NOT_ALLOWED,
                "The guardrail no longer allows this destination (AMISHARE_ALLOWED_DESTINATIONS "
                "or the token's own); nothing was changed for it.",
            )
            targets = [p for p in targets if p not in refused]
            if not targets:
                return None
        try:
            if spec.action is Action.SHARE:
                await self._share(recorder, self._plan_of(spec)).run(spec, targets)
            elif spec.action is Action.REVOKE:
                await self._revoke(recorder, self._plan_of(spec)).run(spec, targets)
            else:
                await self._reconcile(recorder).run(spec, targets)
        except JobCancelledError:
            log.info("job cancelled", extra={"job_id": spec.job_id, "region": spec.region})
        except JobFailedError as failure:
            extra = {"job_id": spec.job_id, "region": spec.region, "code": failure.code}
            log.warning("job failed", extra=extra)
            # The Region's own targets carry its failure (the others may well succeed).
            await recorder.fail_unfinished(failure.code, failure.message)
            return failure
        return None

    def _plan_of(self, spec: JobSpec) -> PlanLog | None:
        return self.plan.for_region(spec.region) if self.plan is not None else None

    def _reconcile(self, recorder: JobRecorder) -> ReconcileProcedure:
        return ReconcileProcedure(
            self.gateway,
            self.locks,
            recorder,
            self.settings,
            self._share(recorder, None),
            self._revoke(recorder, None),
        )

    def _revoke(self, recorder: JobRecorder, plan: PlanLog | None) -> RevokeProcedure:
        unshared = Unshared(self.gateway, self.settings)
        return RevokeProcedure(self.gateway, self.locks, recorder, self.settings, unshared, plan)

    def _share(self, recorder: JobRecorder, plan: PlanLog | None) -> ShareProcedure:
        verifier = Verifier(self.gateway, recorder, self.settings)
        return ShareProcedure(
            self.gateway,
            self.locks,
            recorder,
            verifier,
            self.settings,
            plan,
        )


def _same(failures: Sequence[JobFailedError]) -> bool:
    """Every Region failed for one reason: that is the job's failure."""
    return len({(f.code, f.message) for f in failures}) == 1
