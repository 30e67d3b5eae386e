"""Runs one claimed job to its end: builds the procedure for its action and reports the outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from app.aws.gateway import AwsGateway
from app.domain.errors import JobFailedError
from app.domain.jobs import JobSpec
from app.domain.principals import Principal
from app.domain.types import Action
from app.worker.locks import KeyLocks
from app.worker.recorder import JobRecorder
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


class Executor:
    def __init__(self, gateway: AwsGateway, locks: KeyLocks, settings: ExecutorSettings) -> None:
        self.gateway = gateway
        self.locks = locks
        self.settings = settings

    async def execute(
        self, spec: JobSpec, targets: Sequence[Principal], recorder: JobRecorder
    ) -> JobFailedError | None:
        """Run the job's unfinished targets; a job-level failure is returned, not raised."""
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
