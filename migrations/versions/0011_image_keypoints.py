"""image_hashes: keypoints and their index keys, for crop-tolerant near-duplicate search

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_hashes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keypoints", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("keypoint_keys", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_hashes", schema=None) as batch_op:
        batch_op.drop_column("keypoint_keys")
        batch_op.drop_column("keypoints")
