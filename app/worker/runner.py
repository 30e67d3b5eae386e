"""The worker: claims jobs with a lease, keeps the lease alive, runs them, hands them back.

Any number of workers may run against one PostgreSQL database; on SQLite, the one embedded in
`amishare serve`. A job whose worker dies is claimed again when its lease runs out and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.db.engine import SessionFactory
from app.db.models import Job
from app.db.queue import JobQueue
from app.db.targets import TargetLog
from app.domain.errors import JobErrorCode, JobFailedError
from app.domain.jobs import JobSpec
from app.domain.outcome import final_job_status
from app.domain.principals import principal_of
from app.domain.types import Action, KmsAccess
from app.worker.executor import Executor
from app.worker.sql_recorder import SqlJobRecorder

log = logging.getLogger(__name__)
DATABASE_ERRORS = (OperationalError, DBAPIError, PoolTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    max_jobs: int
    lease_seconds: float
    poll_interval: float
    max_job_attempts: int
    shutdown_grace: float
    skip_locked: bool


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def spec_of(job: Job) -> JobSpec:
    return JobSpec(
        job_id=job.id,
        action=Action(job.action),
        image_id=job.image_id,
        region=job.region,
        source_account_id=job.source_account_id,
        kms_access=KmsAccess(job.kms_access),
        share_snapshots=job.share_snapshots,
        verify=job.verify,
    )


class Worker:
    def __init__(
        self,
        sessions: SessionFactory,
        executor: Executor,
        settings: WorkerSettings,
        worker_id: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.executor = executor
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        backoff = self.settings.poll_interval
        while not stop.is_set():
            job: Job | None = None
            if len(self._running) < self.settings.max_jobs:
                try:
                    job = await self._claim()
                    backoff = self.settings.poll_interval
                except DATABASE_ERRORS as error:
                    log.warning("database unavailable; retrying", extra={"error": str(error)})
                    backoff = min(backoff * 2, 10.0)
            if job is not None:
                self._start(job)
                continue
            self._wake.clear()
            await _wait_any(stop, self._wake, seconds=backoff)
        await self._drain()
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _claim(self) -> Job | None:
        async with self.sessions.begin() as session:
            queue = JobQueue(session, skip_locked=self.settings.skip_locked)
            return await queue.claim_next(self.worker_id, self.lease)

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job {job.id}")
        self._running[job.id] = task
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        for job_id, running in list(self._running.items()):
            if running is task:
                del self._running[job_id]
        self._wake.set()

    async def _run_job(self, job: Job) -> None:
        spec = spec_of(job)
        extra = {"job_id": job.id, "attempt": job.attempts}
        log.info("job claimed", extra=extra)
        work = asyncio.current_task()
        assert work is not None
        heartbeat = asyncio.create_task(self._keep_lease(job.id, work))
        try:
            failure = await self._execute(job, spec)
            await self._finish(job.id, failure)
            log.info("job finished", extra=extra)
        except asyncio.CancelledError:
            await self._release(job.id)
            raise
        except Exception:
            log.exception("job interrupted; it will be retried", extra=extra)
            await self._release(job.id)
        finally:
            heartbeat.cancel()

    async def _execute(self, job: Job, spec: JobSpec) -> JobFailedError | None:
        if job.attempts > self.settings.max_job_attempts:
            return JobFailedError(
                JobErrorCode.TOO_MANY_ATTEMPTS,
                f"The job was interrupted {job.attempts - 1} times (a worker died or lost its "
                "database while running it); it was stopped. Retry it after checking the logs.",
            )
        async with self.sessions() as session:
            rows = await TargetLog(session, job.id, self.worker_id).unfinished()
        targets = [principal_of(t.principal, t.principal_type) for t in rows]
        if not targets:
            return None
        recorder = SqlJobRecorder(self.sessions, spec, self.worker_id)
        return await self.executor.execute(spec, targets, recorder)

    async def _finish(self, job_id: str, failure: JobFailedError | None) -> None:
        async with self.sessions.begin() as session:
            targets = TargetLog(session, job_id, self.worker_id)
            if failure is not None:
                await targets.fail_unfinished(failure.code, failure.message)
            counts = await targets.counts()
            status = final_job_status(counts, job_error=failure is not None)
            error = (failure.code.value, failure.message) if failure else None
            queue = JobQueue(session, skip_locked=self.settings.skip_locked)
            if not await queue.finish(job_id, self.worker_id, status, error):
                log.warning("job was taken over before it finished", extra={"job_id": job_id})

    async def _keep_lease(self, job_id: str, work: asyncio.Task[None]) -> None:
        """Renew the lease; if another worker has the job now, stop working on it."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                async with self.sessions.begin() as session:
                    queue = JobQueue(session, skip_locked=self.settings.skip_locked)
                    still_ours = await queue.renew_lease(job_id, self.worker_id, self.lease)
            except DATABASE_ERRORS as error:
                log.warning("lease renewal failed", extra={"job_id": job_id, "error": str(error)})
                continue
            if not still_ours:
                log.warning("lease lost; stopping work on job", extra={"job_id": job_id})
                work.cancel()
                return

    async def _release(self, job_id: str) -> None:
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self.sessions.begin() as session:
                queue = JobQueue(session, skip_locked=self.settings.skip_locked)
                await queue.release(job_id, self.worker_id)

    async def _drain(self) -> None:
        """Shutdown: give in-flight jobs a grace period, then cancel and release them."""
        tasks = list(self._running.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
