"""Per-KMS-key locks: `PutKeyPolicy` is read-modify-write with no version check."""

from __future__ import annotations

import asyncio
import hashlib
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
    """Session advisory locks: serialize one key's edits across every worker process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._local = ProcessKeyLocks()

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        # Take the in-process lock first so that one process holds one connection per key.
        async with self._local.hold(name), self.engine.connect() as connection:
            number = _lock_number(name)
            await connection.execute(text("SELECT pg_advisory_lock(:n)"), {"n": number})
            await connection.commit()
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                await connection.commit()
