"""Alembic's head is exactly the models' schema, on SQLite and on PostgreSQL, and the migrations
go down to nothing and up again."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config, upgrade
from app.db.models import metadata

# Every table the service uses; a migrated database has exactly these (and Alembic's own).
MODEL_TABLES = {"job", "job_target", "job_key", "share", "key_access", "image_copy", "job_event"}


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


def test_the_models_are_exactly_the_tables_the_service_uses() -> None:
    assert set(metadata.tables) == MODEL_TABLES


async def test_head_is_exactly_the_models_schema(database_url: str) -> None:
    differences = await schema_differences(database_url)

    assert differences == [], (
        "the migrations and app/db/models.py disagree; add a migration "
        f"(alembic revision --autogenerate): {differences}"
    )


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    assert await tables(database_url) == MODEL_TABLES | {"alembic_version"}

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")

    assert await tables(database_url) <= {"alembic_version"}

    await asyncio.to_thread(upgrade, database_url)

    assert await tables(database_url) == MODEL_TABLES | {"alembic_version"}
    assert await schema_differences(database_url) == []


async def test_upgrading_an_up_to_date_database_changes_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)

    assert await schema_differences(database_url) == []


async def test_old_share_rows_become_key_access_rows(database_url: str) -> None:
    """0002 moves what share rows recorded of key access (grant IDs, the key-policy mode)
    into `key_access`, so that a revoke after the upgrade still takes it all back."""
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0001")
    key = "arn:aws:kms:us-east-1:123456789012:key/k1"
    rows = [
        ("ami-00000001", "222222222222", "grant", {key: "grant-1"}),
        ("ami-00000002", "222222222222", "key_policy", {}),
        ("ami-00000001", "333333333333", "key_policy", {}),
    ]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for image_id, principal, mode, grants in rows:
                await connection.execute(
                    text(
                        "INSERT INTO share (image_id, region, principal, principal_type, "
                        "source_account_id, kms_access, kms_key_ids, snapshot_ids, grant_ids, "
                        "job_id, shared_at) VALUES (:image, 'us-east-1', :principal, 'account', "
                        "'123456789012', :mode, :keys, '[]', :grants, 'job-1', :now)"
                    ),
                    {
                        "image": image_id,
                        "principal": principal,
                        "mode": mode,
                        "keys": json.dumps([key]),
                        "grants": json.dumps(grants),
                        "now": datetime.now(UTC),
                    },
                )
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            found = (
                await connection.execute(
                    text(
                        "SELECT principal, key_policy, grant_ids FROM key_access ORDER BY principal"
                    )
                )
            ).all()
            launch = (await connection.execute(text("SELECT launch_permission FROM share"))).all()
    finally:
        await engine.dispose()

    by_principal = {
        principal: (bool(policy), json.loads(grants) if isinstance(grants, str) else grants)
        for principal, policy, grants in found
    }
    assert by_principal == {"222222222222": (True, ["grant-1"]), "333333333333": (True, [])}
    assert {bool(row[0]) for row in launch} == {True}
