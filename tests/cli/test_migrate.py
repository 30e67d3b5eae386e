"""`amishare migrate` from several replicas at once on PostgreSQL: they take turns under an
advisory lock (migrations/env.py), and every one of them succeeds."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.db.migrate import alembic_config
from tests.cli.test_serve import amishare_env
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.db.test_migrations import schema_differences

AMISHARE = Path(sys.executable).parent / "amishare"
REPLICAS = 3
# The key of migrations/env.py's lock, pg_advisory_lock(class_id, object_id).
LOCK = {"class_id": 0x616D69, "object_id": 1}
WAITERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = :class_id AND objid = :object_id AND objsubid = 2"
)


async def _wait_for_waiters(
    connection: AsyncConnection, processes: list[asyncio.subprocess.Process], count: int
) -> None:
    deadline = time.monotonic() + 60
    while (await connection.execute(WAITERS, LOCK)).scalar_one() < count:
        exited = [p for p in processes if p.returncode is not None]
        if exited:
            output = await exited[0].communicate()
            raise AssertionError(f"a migrate ended without waiting for the lock: {output}")
        assert time.monotonic() < deadline, "the replicas did not all wait for the lock"
        await asyncio.sleep(0.1)


@pytest.mark.skipif(not AMISHARE.exists(), reason="the amishare console script is not installed")
async def test_replicas_migrating_at_once_take_turns_and_all_succeed() -> None:
    url = await _create_postgres_database()
    holder = create_async_engine(url)
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with holder.connect() as connection:
            # Hold the lock so that every replica is in the race before any migrates.
            await connection.execute(text("SELECT pg_advisory_lock(:class_id, :object_id)"), LOCK)
            await connection.commit()
            processes = [
                await asyncio.create_subprocess_exec(
                    AMISHARE,
                    "migrate",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=amishare_env(AMISHARE_DATABASE_URL=url),
                )
                for _ in range(REPLICAS)
            ]
            await _wait_for_waiters(connection, processes, REPLICAS)
            await connection.execute(text("SELECT pg_advisory_unlock(:class_id, :object_id)"), LOCK)
            await connection.commit()
            async with asyncio.timeout(60):
                results = [await p.communicate() for p in processes]
            held = await connection.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            )
            assert held.scalar_one() == 0  # released by each of them
            version = await connection.execute(text("SELECT version_num FROM alembic_version"))
            versions = version.scalars().all()

        for process, (out, err) in zip(processes, results, strict=True):
            assert process.returncode == 0, err.decode()
            assert "database is up to date" in out.decode()
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert versions == [head]
        assert await schema_differences(url) == []
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await holder.dispose()
        await _drop_postgres_database(url)
