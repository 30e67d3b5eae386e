"""Runs one claimed job to its end: builds the procedure for its action and reports the outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from app.aws.gateway import AwsGateway
from app.config import Settings
from app.domain.codes import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal
from app.domain.types import Action, Step
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.revoke import RevokeProcedure
from app.worker.share import JobCancelledError, ShareProcedure
from app.worker.verification import Verifier

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, gateway: AwsGateway, locks: KeyLocks, settings: Settings) -> None:
        self.gateway = gateway
        self.locks = locks
        self.settings = settings

    async def execute(
        self, spec: JobSpec, targets: Sequence[Principal], recorder: JobRecorder
    ) -> JobFailedError | None:
        """Run the job's unfinished targets; a job-level failure is returned, not raised."""
        guardrails = self.settings.job_guardrails
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
        return RevokeProcedure(self.gateway, self.locks, recorder, self.settings)

    def _share(self, recorder: JobRecorder) -> ShareProcedure:
        verifier = Verifier(self.gateway, recorder, self.settings)
        return ShareProcedure(
            self.gateway,
            self.locks,
            recorder,
            verifier,
            self.settings,
        )
