"""The Runtime: what a running `amishare serve` or `amishare worker` holds, built in one place.

Both commands open one: the database engine and sessions, the AWS gateway, the key locks, the
metrics and, when this process runs jobs, the worker. The API keeps it as `app.state.runtime`
and reads it only through `runtime_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State

from app.api.auth import TokenBook
from app.aws.boto_gateway import BotoAwsGateway
from app.aws.gateway import AwsGateway
from app.config import Settings
from app.db.engine import SessionFactory, make_engine, make_session_factory
from app.db.key_locks import PostgresKeyLocks, ProcessKeyLocks
from app.heap import settle_heap
from app.metrics import Metrics
from app.service.status_cache import StatusCache
from app.worker.executor import Executor
from app.worker.plan import Planner
from app.worker.ports import KeyLocks
from app.worker.runner import Worker

log = logging.getLogger(__name__)
DISPOSE_TIMEOUT_SECONDS = 5.0
LOOP_WATCH_SECONDS = 0.1


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    gateway: AwsGateway
    locks: KeyLocks
    metrics: Metrics
    tokens: TokenBook
    status_cache: StatusCache
    planner: Planner
    worker: Worker | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def wake_worker(self) -> None:
        """A job was queued: an embedded worker looks now rather than at its next poll."""
        if self.worker is not None:
            self.worker.wake()

    async def watch_event_loop(self, interval: float = LOOP_WATCH_SECONDS) -> None:
        """Until `stop`: how late the loop wakes this task, into the metrics (a held loop
        delays every request, lease renewal and AWS call of the process)."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            started = loop.time()
            await asyncio.sleep(interval)
            self.metrics.observe_loop_lag(max(0.0, loop.time() - started - interval))

    async def own_account(self) -> str:
        """The account of the service's own credentials: a job's default source."""
        return await self.gateway.own_account_id()


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    gateway: AwsGateway | None = None,
    run_jobs: bool,
    long_running: bool = False,
) -> AsyncIterator[Runtime]:
    """Everything the process needs, closed in reverse order on exit. `gateway`: one the
    caller owns (tests); `long_running`: settle the heap after warming the AWS clients."""
    engine = make_engine(settings.database_url)
    metrics = Metrics()
    aws: AwsGateway = gateway or BotoAwsGateway.from_settings(settings)
    try:
        if isinstance(aws, BotoAwsGateway):
            aws.observe_calls(metrics.observe_aws_call)
            if long_running:
                await settle_heap(aws)
        sessions = make_session_factory(engine)
        locks: KeyLocks = ProcessKeyLocks() if settings.is_sqlite else PostgresKeyLocks(engine)
        runtime = Runtime(
            settings,
            engine,
            sessions,
            aws,
            locks,
            metrics,
            TokenBook(settings.api_tokens),
            StatusCache(settings.status_cache_seconds),
            Planner(sessions, aws, settings),
        )
        if run_jobs:
            executor = Executor(aws, locks, settings)
            runtime.worker = Worker(sessions, executor, settings, on_finished=metrics.job_finished)
        yield runtime
    finally:
        if gateway is None and isinstance(aws, BotoAwsGateway):
            await aws.aclose()
        # Bounded: closing connections to a database that does not answer must not keep a
        # stopping process alive (a worker's leases run out; nothing else is left to do).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISPOSE_TIMEOUT_SECONDS):
                await engine.dispose()


def runtime_of(state: State) -> Runtime:
    """The app's Runtime (typed); set by the app's lifespan."""
    runtime: Runtime = state.runtime
    return runtime
