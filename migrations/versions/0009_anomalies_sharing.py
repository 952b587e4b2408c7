"""anomaly limits (tenant defaults, per case) and image sharing for reverse image search

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anomaly_limits", sa.JSON(), nullable=True))
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anomaly_limits", sa.JSON(), nullable=True))
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shared_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("shared_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("share_token", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("share_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_images_share_token", ["share_token"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_share_token")
        batch_op.drop_column("share_expires_at")
        batch_op.drop_column("share_token")
        batch_op.drop_column("shared_by")
        batch_op.drop_column("shared_at")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("anomaly_limits")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("anomaly_limits")
