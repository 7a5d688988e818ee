"""Runs and usage records: the input tokens the provider read from its prompt cache.

Revision ID: 20261203_1500
Revises: 20261203_0930
Create Date: 2026-12-03 15:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_1500"
down_revision: str | None = "20261203_0930"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: Postgres adds the column without rewriting the table.
    op.add_column(
        "run", sa.Column("cached_input_tokens", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "usage_record",
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("usage_record", "cached_input_tokens")
    op.drop_column("run", "cached_input_tokens")
