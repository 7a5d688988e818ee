"""Retention: per-tenant conversation retention, tenant data deletion requests.

Revision ID: 20261128_1100
Revises: 20261128_0900
Create Date: 2026-11-28 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261128_1100"
down_revision: str | None = "20261128_0900"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenant", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "tenant_data_deletion",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_tenant_data_deletion_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_tenant_data_deletion_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_data_deletion")),
    )
    op.create_index(
        op.f("ix_tenant_data_deletion_tenant_id"),
        "tenant_data_deletion",
        ["tenant_id"],
        unique=False,
    )
    # The clean-up's own look-ups: idle conversations, processed Stripe events.
    op.create_index("ix_conversation_updated_at", "conversation", ["updated_at"])
    op.create_index("ix_stripe_event_processed_at", "stripe_event", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_stripe_event_processed_at", table_name="stripe_event")
    op.drop_index("ix_conversation_updated_at", table_name="conversation")
    op.drop_index(op.f("ix_tenant_data_deletion_tenant_id"), table_name="tenant_data_deletion")
    op.drop_table("tenant_data_deletion")
    op.drop_column("tenant", "retention_days")
