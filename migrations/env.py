"""Alembic environment: async engine, the models' metadata, batch mode for SQLite, and on
PostgreSQL an advisory lock around the whole run, so that replicas migrating at once take turns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.db.models  # noqa: F401  (registers the tables)
from app.db.models import metadata

config = context.config

# pg_advisory_lock(int4, int4): a key space apart from the one-bigint keys of app/db/key_locks.py.
MIGRATION_LOCK = {"class_id": 0x616D69, "object_id": 1}  # "ami", the schema's migrations


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _unlock(connection: Connection) -> None:
    if connection.in_transaction():
        connection.rollback()
    connection.execute(text("SELECT pg_advisory_unlock(:class_id, :object_id)"), MIGRATION_LOCK)
    connection.commit()


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, a session advisory lock from before Alembic reads the version table until
    after the migrations are committed: a second process waits, then finds the schema at head
    and does nothing. It is released by the server too if this process dies. SQLite: none."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:class_id, :object_id)"), MIGRATION_LOCK)
    connection.commit()  # the lock outlives this transaction; Alembic begins its own
    try:
        yield
    except BaseException:
        with suppress(Exception):  # a lost connection has released the lock already
            _unlock(connection)
        raise
    _unlock(connection)


def _run_sync(connection: Connection) -> None:
    with _migration_lock(connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


async def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
