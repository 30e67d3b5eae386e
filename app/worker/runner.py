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
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from app.config import Settings
from app.db.engine import SessionFactory
from app.db.errors import CONNECTION_ERRORS, database_unavailable
from app.db.job_targets import JobTargets
from app.db.models import Job
from app.db.queue import JobQueue
from app.domain.codes import JobErrorCode, JobFailedError
from app.domain.copies import CopyOptions
from app.domain.job_spec import JobSpec
from app.domain.outcome import final_job_status
from app.domain.principals import Principal, principal_of
from app.domain.types import Action, JobStatus, KmsAccess
from app.logs import bind_job
from app.worker.executor import Executor
from app.worker.sql_recorder import SqlJobRecorder

log = logging.getLogger(__name__)
RELEASE_TIMEOUT_SECONDS = 5.0
# Attempts a job gets when it keeps failing on an unexpected error (a bug): one more, then
# InternalError, not MAX_JOB_ATTEMPTS claims blaming dead workers.
UNEXPECTED_ERROR_ATTEMPTS = 2


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
        created_by=job.created_by,
        copy=CopyOptions(**job.copy_options) if job.copy_options else None,
        reencrypt_key=(job.reencrypt or {}).get("kms_key_id"),
        regions=tuple(job.regions),
        region_kms_key_ids=dict(job.region_kms_key_ids),
        repair=job.repair,
        prune=job.prune,
    )


class LeaseKeeper:
    """Keeps the leases of a worker's running jobs: one UPDATE for all of them every third of
    a lease, and a callback for each job found to be someone else's now.

    It runs on the worker's event loop. The loop is held for well under a second even by a job
    with 1,000 destinations, because the AWS clients are built at start (bench/loop_stall.py,
    docs/performance.md), so a renewal is never late by more than that; a hung loop renews
    nothing, and its worker loses its jobs as it should.
    """

    def __init__(self, sessions: SessionFactory, worker_id: str, settings: Settings) -> None:
        self._sessions = sessions
        self._worker_id = worker_id
        self._skip_locked = settings.skip_locked
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._interval = settings.lease_seconds / 3
        self._held: dict[str, Callable[[], None]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def hold(self, job_id: str, on_lost: Callable[[], None]) -> None:
        """Keep this job's lease; `on_lost` runs if the job turns out to be another's."""
        self._held[job_id] = on_lost

    def drop(self, job_id: str) -> None:
        self._held.pop(job_id, None)

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew_forever(), name="lease keeper")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _renew_forever(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                await self._renew()
            except Exception as error:
                if not database_unavailable(error):
                    log.exception("lease renewal failed unexpectedly")
                else:
                    log.warning("lease renewal failed", extra={"error": str(error)})
            took = time.monotonic() - started
            if took > self._interval:
                # Leases are at risk: the database is slow or away (lease_seconds may be short).
                log.warning("lease renewal slow", extra={"seconds": round(took, 2)})

    async def _renew(self) -> None:
        held = dict(self._held)
        if not held:
            return
        async with self._sessions.begin() as session:
            queue = JobQueue(session, skip_locked=self._skip_locked)
            kept = await queue.renew_leases(list(held), self._worker_id, self._lease)
        for job_id, on_lost in held.items():
            if job_id not in kept:
                on_lost()


class Worker:
    def __init__(
        self,
        sessions: SessionFactory,
        executor: Executor,
        settings: Settings,
        worker_id: str | None = None,
        on_finished: Callable[[str, str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.executor = executor
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.on_finished = on_finished  # (action, final status): the metrics
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases = LeaseKeeper(sessions, self.worker_id, settings)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        self._leases.start()
        try:
            await self._run(stop)
        finally:
            await self._leases.stop()
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _run(self, stop: asyncio.Event) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        backoff = self.settings.poll_interval_seconds
        while not stop.is_set():
            job: Job | None = None
            if len(self._running) < self.settings.worker_max_jobs:
                try:
                    job = await self._claim()
                    backoff = self.settings.poll_interval_seconds
                except Exception as error:
                    if not database_unavailable(error):
                        # A bug in claiming: stop the worker, loudly, rather than spin on it.
                        log.exception("claiming a job failed unexpectedly; the worker stops")
                        raise
                    log.warning("database unavailable; retrying", extra={"error": str(error)})
                    backoff = min(backoff * 2, 10.0)
            if job is not None and stop.is_set():
                await self._release(job.id)  # told to stop while claiming it: hand it back
            elif job is not None:
                self._start(job)
                continue
            self._wake.clear()
            await _wait_any(stop, self._wake, seconds=backoff)
        await self._drain()

    async def _claim(self) -> Job | None:
        async with self.sessions.begin() as session:
            queue = JobQueue(session, skip_locked=self.settings.skip_locked)
            return await queue.claim_next(self.worker_id, self.lease, running=set(self._running))

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
        bind_job(job.id)
        spec = spec_of(job)
        extra = {"job_id": job.id, "attempt": job.attempts}
        log.info("job claimed", extra=extra)
        work = asyncio.current_task()
        assert work is not None
        self._leases.hold(job.id, lambda: self._lease_lost(job.id, work))
        try:
            failure = await self._execute(job, spec)
            # Finishing takes no time against the lease left; were the job taken over meanwhile,
            # `finish` would find it so. And a renewal that sees the job finished must not take it
            # for lost and cancel the finishing.
            self._leases.drop(job.id)
            status = await self._finish(job.id, failure)
            if status is not None and self.on_finished is not None:
                self.on_finished(job.action, status)
            log.info("job finished", extra=extra)
        except asyncio.CancelledError:
            await self._release(job.id)
            raise
        except Exception as error:
            await self._interrupted(job, error, extra)
        finally:
            self._leases.drop(job.id)

    async def _interrupted(self, job: Job, error: Exception, extra: dict[str, object]) -> None:
        """The database went away: the job is handed back and resumes. Anything else is a bug:
        logged with its traceback, tried once more, then the job fails with InternalError."""
        if database_unavailable(error):
            log.warning("job interrupted: database unavailable; it will resume", extra=extra)
            await self._release(job.id)
            return
        log.exception("job failed on an unexpected error", extra=extra)
        if job.attempts < UNEXPECTED_ERROR_ATTEMPTS:
            await self._release(job.id)
            return
        failure = JobFailedError(
            JobErrorCode.INTERNAL_ERROR,
            f"amishare failed on an unexpected error ({type(error).__name__}) in "
            f"{job.attempts} attempts; it is logged with job {job.id}. Retry once it is fixed.",
        )
        self._leases.drop(job.id)
        with contextlib.suppress(Exception):
            await self._finish(job.id, failure)

    def _lease_lost(self, job_id: str, work: asyncio.Task[None]) -> None:
        """Another worker has the job now (our lease ran out): stop working on it."""
        if self._leases.holds(job_id) and self._running.get(job_id) is work and not work.done():
            log.warning("lease lost; stopping work on job", extra={"job_id": job_id})
            work.cancel()

    async def _execute(self, job: Job, spec: JobSpec) -> JobFailedError | None:
        if job.attempts > self.settings.max_job_attempts:
            return JobFailedError(
                JobErrorCode.TOO_MANY_ATTEMPTS,
                f"The job was interrupted {job.attempts - 1} times (a worker died or lost its "
                "database while running it); it was stopped. Retry it after checking the logs.",
            )
        async with self.sessions() as session:
            job_targets = JobTargets(session, job.id, self.worker_id)
            rows = await job_targets.unfinished()
            # A reconcile that named no targets (none at all, not just none left) finds them.
            discovering = (
                not rows and spec.action is Action.RECONCILE and not await job_targets.counts()
            )
        targets: dict[str, list[Principal]] = {}
        for row in rows:
            targets.setdefault(row.region, []).append(
                principal_of(row.principal, row.principal_type)
            )
        if discovering:
            targets = {spec.region: []}
        if not targets:
            return None
        recorder = SqlJobRecorder(self.sessions, spec, self.worker_id)
        return await self.executor.execute(spec, targets, recorder)

    async def _finish(self, job_id: str, failure: JobFailedError | None) -> JobStatus | None:
        """Record the job's final status; None when another worker has taken it over."""
        async with self.sessions.begin() as session:
            targets = JobTargets(session, job_id, self.worker_id)
            if failure is not None:
                await targets.fail_unfinished(failure.code, failure.message)
            counts = await targets.counts()
            status = final_job_status(counts, job_error=failure is not None)
            error = (failure.code.value, failure.message) if failure else None
            queue = JobQueue(session, skip_locked=self.settings.skip_locked)
            if not await queue.finish(job_id, self.worker_id, status, error):
                log.warning("job was taken over before it finished", extra={"job_id": job_id})
                return None
        return status

    async def _release(self, job_id: str) -> None:
        """Hand the job back for any worker to claim at once; if the database cannot be
        reached soon, its lease runs out instead (shutdown must not wait for the database)."""
        with contextlib.suppress(*CONNECTION_ERRORS):
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS), self.sessions.begin() as session:
                queue = JobQueue(session, skip_locked=self.settings.skip_locked)
                released = await queue.release(job_id, self.worker_id)
            if released:
                log.info("job handed back", extra={"job_id": job_id})

    async def _drain(self) -> None:
        """Shutdown: give in-flight jobs a grace period, then cancel and release them."""
        tasks = list(self._running.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
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
