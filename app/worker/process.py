"""`amishare worker`: a worker process with no HTTP, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from app.aws.boto_gateway import BotoAwsGateway
from app.config import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.key_locks import PostgresKeyLocks, ProcessKeyLocks
from app.heap import settle_heap
from app.worker.executor import Executor
from app.worker.ports import KeyLocks
from app.worker.runner import Worker
from app.worker.settings import executor_settings, worker_settings

log = logging.getLogger(__name__)
DISPOSE_TIMEOUT_SECONDS = 5.0


async def run_worker(settings: Settings, *, install_signal_handlers: bool) -> None:
    engine = make_engine(settings.database_url)
    locks: KeyLocks = ProcessKeyLocks() if settings.is_sqlite else PostgresKeyLocks(engine)
    stop = asyncio.Event()
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with BotoAwsGateway.from_settings(settings) as gateway:
        await settle_heap(gateway)
        executor = Executor(gateway, locks, executor_settings(settings))
        worker = Worker(make_session_factory(engine), executor, worker_settings(settings))
        try:
            await worker.run(stop)
        finally:
            # Bounded: closing connections to a database that does not answer must not keep a
            # stopping worker alive (its leases run out; nothing else is left to do).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DISPOSE_TIMEOUT_SECONDS):
                    await engine.dispose()
