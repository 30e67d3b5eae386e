"""Per-KMS-key locks: `PutKeyPolicy` is read-modify-write with no version check."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def _lock_number(name: str) -> int:
    """A stable signed 64-bit number for a lock name (PostgreSQL advisory lock keys)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class ProcessKeyLocks:
    """Locks within one process: enough for SQLite, where one embedded worker runs."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            yield


class PostgresKeyLocks:
    """Session advisory locks: serialize one key's edits across every worker process.

    The lock is held by the session of one connection: if the process dies, or the connection
    is lost, PostgreSQL releases it. It is taken with `pg_try_advisory_lock`, retried, rather
    than by waiting inside `pg_advisory_lock`: no statement waits for another job's AWS calls
    (statements have a timeout, engine.py), and giving up (cancellation) never leaves a lock
    granted to a connection nobody is watching.
    """

    def __init__(self, engine: AsyncEngine, poll_seconds: float = 0.05) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._local = ProcessKeyLocks()

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        # Take the in-process lock first so that one process holds one connection per key.
        async with self._local.hold(name), self.engine.connect() as connection:
            number = _lock_number(name)
            delay = self.poll_seconds
            while True:
                taken = await connection.scalar(
                    text("SELECT pg_try_advisory_lock(:n)"), {"n": number}
                )
                await connection.commit()
                if taken:
                    break
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 1.0)
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                await connection.commit()
