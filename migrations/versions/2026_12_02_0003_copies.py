"""copies: image_copy (copies made in the source, reused), the job's reencrypt key and shared
image, and on share rows the image a copy came from and the destination's own copy

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 17:21:39.094357
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_copy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_account_id", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("source_image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source_region", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kms_key_id", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("client_token", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", app.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", app.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_copy")),
        sa.UniqueConstraint(
            "source_image_id", "source_region", "region", "kms_key_id", name="uq_image_copy"
        ),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reencrypt", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("shared_image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )

    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source_image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("copied_image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "copy_kms_key_id", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True
            )
        )
        batch_op.create_index(
            batch_op.f("ix_share_source_image_id"), ["source_image_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_source_image_id"))
        batch_op.drop_column("copy_kms_key_id")
        batch_op.drop_column("copied_image_id")
        batch_op.drop_column("source_image_id")

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("shared_image_id")
        batch_op.drop_column("reencrypt")

    op.drop_table("image_copy")
