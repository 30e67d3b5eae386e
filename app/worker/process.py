"""`amishare worker`: a worker process with no HTTP, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from app.config import Settings
from app.runtime import open_runtime


async def run_worker(settings: Settings, *, install_signal_handlers: bool) -> None:
    async with open_runtime(settings, run_jobs=True, long_running=True) as runtime:
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, runtime.stop.set)
        assert runtime.worker is not None
        watch = asyncio.create_task(runtime.watch_event_loop(), name="event loop watch")
        try:
            await runtime.worker.run(runtime.stop)
        finally:
            watch.cancel()
