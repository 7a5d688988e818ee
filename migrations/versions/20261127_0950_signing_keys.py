"""Signing keys: lifecycle state and public halves.

Revision ID: 20261127_0950
Revises: 20261127_0900
Create Date: 2026-11-27 09:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261127_0950"
down_revision: str | None = "20261127_0900"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("store_version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('next', 'active', 'retired', 'removed')",
            name=op.f("ck_signing_key_state_known"),
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_key")),
    )
    op.create_index(
        "uq_signing_key_one_active",
        "signing_key",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "uq_signing_key_one_next",
        "signing_key",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'next'"),
    )


def downgrade() -> None:

    op.drop_index(
        "uq_signing_key_one_next",
        table_name="signing_key",
        postgresql_where=sa.text("state = 'next'"),
    )
    op.drop_index(
        "uq_signing_key_one_active",
        table_name="signing_key",
        postgresql_where=sa.text("state = 'active'"),
    )
    op.drop_table("signing_key")
