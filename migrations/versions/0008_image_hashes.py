"""image_hashes: one PDQ perceptual hash per image, for near-duplicate search

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_hashes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("pdq", sa.LargeBinary(length=32), nullable=False),
        sa.Column("variants", sa.LargeBinary(length=224), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("image_id"),
    )
    with op.batch_alter_table("image_hashes", schema=None) as batch_op:
        batch_op.create_index("ix_image_hashes_case_id", ["case_id"], unique=False)
        batch_op.create_index("ix_image_hashes_tenant_seq", ["tenant_id", "seq"], unique=False)
        batch_op.create_index("ix_image_hashes_tenant_pdq", ["tenant_id", "pdq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_hashes", schema=None) as batch_op:
        batch_op.drop_index("ix_image_hashes_tenant_pdq")
        batch_op.drop_index("ix_image_hashes_tenant_seq")
        batch_op.drop_index("ix_image_hashes_case_id")
    op.drop_table("image_hashes")
