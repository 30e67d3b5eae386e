"""regions: a job's other Regions and their keys; targets per (principal, Region)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:08:12.383725
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("regions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column(
                "region_kms_key_ids", sa.JSON(), nullable=False, server_default=sa.text("'{}'")
            )
        )
    with op.batch_alter_table("job_target", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("region", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("image_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    # Targets so far are in their job's Region, sharing the job's image.
    op.execute(
        "UPDATE job_target SET region = "
        "(SELECT job.region FROM job WHERE job.id = job_target.job_id)"
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.alter_column("regions", server_default=None)
        batch_op.alter_column("region_kms_key_ids", server_default=None)
    with op.batch_alter_table("job_target", schema=None) as batch_op:
        batch_op.alter_column(
            "region", existing_type=sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        )
        batch_op.drop_constraint("uq_job_target_principal", type_="unique")
        batch_op.create_unique_constraint(
            "uq_job_target_principal", ["job_id", "principal", "region"]
        )


def downgrade() -> None:
    with op.batch_alter_table("job_target", schema=None) as batch_op:
        batch_op.drop_constraint("uq_job_target_principal", type_="unique")
        batch_op.create_unique_constraint("uq_job_target_principal", ["job_id", "principal"])
        batch_op.drop_column("image_id")
        batch_op.drop_column("region")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("region_kms_key_ids")
        batch_op.drop_column("regions")
