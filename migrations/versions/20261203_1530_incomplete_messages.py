"""Messages: ``incomplete``, a reply cut short by a cancel.

Revision ID: 20261203_1530
Revises: 20261203_1500
Create Date: 2026-12-03 15:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_1530"
down_revision: str | None = "20261203_1500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "message",
        sa.Column("incomplete", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("message", "incomplete")
