"""plans and reconcile: the keys behind a job (its destinations' IAM policy), a reconcile's
repair/prune and each target's drift

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:27:43.399247
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key_arn", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_key")),
        sa.UniqueConstraint("job_id", "key_arn", name="uq_job_key"),
    )
    with op.batch_alter_table("job_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_key_job_id"), ["job_id"], unique=False)

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("repair", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("prune", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.alter_column("repair", server_default=None)
        batch_op.alter_column("prune", server_default=None)

    with op.batch_alter_table("job_target", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drift", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_target", schema=None) as batch_op:
        batch_op.drop_column("drift")

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("prune")
        batch_op.drop_column("repair")

    with op.batch_alter_table("job_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_key_job_id"))

    op.drop_table("job_key")
