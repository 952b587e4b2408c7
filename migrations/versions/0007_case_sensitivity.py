"""cases: sensitivity, how hard the deep scan looks at the case's images

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sensitivity", sa.String(length=16), server_default="default", nullable=False))
        batch_op.create_check_constraint("sensitivity_valid", "sensitivity IN ('fast', 'default', 'thorough')")


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint("sensitivity_valid", type_="check")
        batch_op.drop_column("sensitivity")
