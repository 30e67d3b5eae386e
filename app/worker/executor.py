"""Runs one claimed job to its end: builds the procedure for its action and reports the outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.aws.gateway import AwsGateway
from app.domain.access import JobSpec
from app.domain.codes import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.guardrails import JobGuardrails
from app.domain.principals import Principal
from app.domain.types import Action, Step
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.retry import RetryPolicy
from app.worker.revoke import RevokeProcedure, RevokeSettings
from app.worker.share import JobCancelledError, ProcedureSettings, ShareProcedure
from app.worker.verification import Verifier, VerifySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    target_concurrency: int
    retry: RetryPolicy
    verify_timeout: float
    verify_initial_delay: float
    guardrails: JobGuardrails = field(default_factory=JobGuardrails)


class Executor:
    def __init__(self, gateway: AwsGateway, locks: KeyLocks, settings: ExecutorSettings) -> None:
        self.gateway = gateway
        self.locks = locks
        self.settings = settings

    async def execute(
        self, spec: JobSpec, targets: Sequence[Principal], recorder: JobRecorder
    ) -> JobFailedError | None:
        """Run the job's unfinished targets; a job-level failure is returned, not raised."""
        guardrails = self.settings.guardrails
        if not guardrails.allows_source(spec.source_account_id, spec.created_by):
            return JobFailedError(
                JobErrorCode.SOURCE_NOT_ALLOWED,
                f"The source account {spec.source_account_id} is no longer among the allowed "
                "sources (AMISHARE_ALLOWED_SOURCES or the token's own); nothing was changed.",
            )
        giving = spec.action is Action.SHARE
        refused = [
            p
            for p in targets
            if not guardrails.allows_destination(p, spec.created_by, giving=giving)
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
                await self._share(recorder).run(spec, targets)
            else:
                await self._revoke(recorder).run(spec, targets)
        except JobCancelledError:
            log.info("job cancelled", extra={"job_id": spec.job_id})
        except JobFailedError as failure:
            log.warning("job failed", extra={"job_id": spec.job_id, "code": failure.code})
            return failure
        return None

    def _revoke(self, recorder: JobRecorder) -> RevokeProcedure:
        settings = RevokeSettings(self.settings.target_concurrency, self.settings.retry)
        return RevokeProcedure(self.gateway, self.locks, recorder, settings)

    def _share(self, recorder: JobRecorder) -> ShareProcedure:
        verifier = Verifier(
            self.gateway,
            recorder,
            VerifySettings(
                concurrency=self.settings.target_concurrency,
                timeout=self.settings.verify_timeout,
                initial_delay=self.settings.verify_initial_delay,
                retry=self.settings.retry,
            ),
        )
        return ShareProcedure(
            self.gateway,
            self.locks,
            recorder,
            verifier,
            ProcedureSettings(self.settings.target_concurrency, self.settings.retry),
        )
