"""Alembic's head is exactly the models' schema, on SQLite and on PostgreSQL, and the migrations
go down to nothing and up again."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config, upgrade
from app.db.models import metadata

MODEL_TABLES = {"job", "job_target", "share", "job_event"}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True, "render_as_batch": True},
    )
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def schema_differences(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await engine.dispose()


async def tables(database_url: str) -> set[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_tables)
    finally:
        await engine.dispose()


def test_models_name_the_tables_the_service_uses() -> None:
    assert set(metadata.tables) >= MODEL_TABLES


async def test_head_is_exactly_the_models_schema(database_url: str) -> None:
    differences = await schema_differences(database_url)

    assert differences == [], (
        "the migrations and app/db/models.py disagree; add a migration "
        f"(alembic revision --autogenerate): {differences}"
    )


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    assert await tables(database_url) >= MODEL_TABLES

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")

    assert await tables(database_url) <= {"alembic_version"}

    await asyncio.to_thread(upgrade, database_url)

    assert await tables(database_url) >= MODEL_TABLES
    assert await schema_differences(database_url) == []


async def test_upgrading_an_up_to_date_database_changes_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)

    assert await schema_differences(database_url) == []
