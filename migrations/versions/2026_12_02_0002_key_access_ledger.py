"""key access ledger: every way in to a key, per key and principal; change detail in events

Share rows no longer hold grant IDs: key access moves to `key_access`, one row per key and
principal with our key-policy statement and every grant ID, so that a revoke takes back all of
them whatever mode the share used. Shares gain `launch_permission` (a row may remain without it)
and `updated_at`; events gain `detail`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key_access_rows(connection: sa.Connection) -> list[dict[str, Any]]:
    """key_access rows for what the old share rows recorded."""
    share = sa.table(
        "share",
        sa.column("region", sa.String),
        sa.column("principal", sa.String),
        sa.column("principal_type", sa.String),
        sa.column("source_account_id", sa.String),
        sa.column("kms_access", sa.String),
        sa.column("kms_key_ids", sa.JSON),
        sa.column("grant_ids", sa.JSON),
    )
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in connection.execute(sa.select(share)).mappings():
        keys = list(row["kms_key_ids"] or [])
        grants = dict(row["grant_ids"] or {})
        for key_arn in set(keys) | set(grants):
            entry = found.setdefault(
                (key_arn, row["principal"]),
                {
                    "region": row["region"],
                    "key_arn": key_arn,
                    "principal": row["principal"],
                    "principal_type": row["principal_type"],
                    "source_account_id": row["source_account_id"],
                    "key_policy": False,
                    "grant_ids": [],
                    "updated_at": app.db.types.utcnow(),
                },
            )
            if row["kms_access"] == "key_policy" and key_arn in keys:
                entry["key_policy"] = True
            if key_arn in grants and grants[key_arn] not in entry["grant_ids"]:
                entry["grant_ids"].append(grants[key_arn])
    return list(found.values())


def upgrade() -> None:
    key_access = op.create_table(
        "key_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("key_arn", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("principal_type", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("source_account_id", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("key_policy", sa.Boolean(), nullable=False),
        sa.Column("grant_ids", sa.JSON(), nullable=False),
        sa.Column("updated_at", app.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_access")),
        sa.UniqueConstraint("key_arn", "principal", name="uq_key_access_key_principal"),
    )
    op.create_index("ix_key_access_principal", "key_access", ["principal", "region"], unique=False)
    rows = _key_access_rows(op.get_bind())
    if rows:
        op.bulk_insert(key_access, rows)
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("launch_permission", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("updated_at", app.db.types.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.drop_column("grant_ids")
    op.execute("UPDATE share SET updated_at = shared_at")
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.alter_column("launch_permission", server_default=None)
        batch_op.alter_column(
            "updated_at", existing_type=app.db.types.UtcDateTime(timezone=True), nullable=False
        )
    with op.batch_alter_table("job_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_event", schema=None) as batch_op:
        batch_op.drop_column("detail")
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grant_ids", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.drop_column("updated_at")
        batch_op.drop_column("launch_permission")
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.alter_column("grant_ids", server_default=None)
    op.drop_index("ix_key_access_principal", table_name="key_access")
    op.drop_table("key_access")
