"""Billing: plans (seeded), Stripe customers, subscriptions, usage records, Stripe events.

Revision ID: 20261128_0900
Revises: 20261127_1010
Create Date: 2026-11-28 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261128_0900"
down_revision: str | None = "20261127_1010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("seat_price_cents", sa.Integer(), nullable=False),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("stripe_seat_price_id", sa.String(length=100), nullable=True),
        sa.Column("stripe_usage_price_id", sa.String(length=100), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_plan")),
    )
    op.create_table(
        "stripe_event",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_event")),
    )
    op.create_index(
        "ix_stripe_event_unprocessed",
        "stripe_event",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "billing_customer",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_billing_customer_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_customer")),
        sa.UniqueConstraint(
            "stripe_customer_id", name=op.f("uq_billing_customer_stripe_customer_id")
        ),
    )
    op.create_table(
        "subscription",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(length=100), nullable=True),
        sa.Column("stripe_item_id", sa.String(length=100), nullable=True),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("sync_version", sa.Integer(), nullable=False),
        sa.Column("synced_version", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stripe_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'incomplete', 'incomplete_expired', 'trialing', 'active',"
            " 'past_due', 'unpaid', 'paused', 'canceled', 'failed')",
            name=op.f("ck_subscription_status_known"),
        ),
        sa.CheckConstraint("seats >= 1", name=op.f("ck_subscription_seats_positive")),
        sa.ForeignKeyConstraint(
            ["plan_code"], ["plan.code"], name=op.f("fk_subscription_plan_code_plan")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_subscription_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_subscription_stripe_subscription_id")
        ),
    )
    op.create_index(
        "uq_subscription_live_tenant",
        "subscription",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("status NOT IN ('canceled', 'failed', 'incomplete_expired')"),
    )
    op.create_table(
        "usage_record",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_state", sa.String(length=16), nullable=False),
        sa.Column("report_batch_id", sa.UUID(), nullable=True),
        sa.Column("reported_quantity", sa.BigInteger(), nullable=True),
        sa.Column("stripe_identifier", sa.String(length=100), nullable=True),
        sa.Column("report_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "report_state IN ('pending', 'sending', 'reported', 'skipped')",
            name=op.f("ck_usage_record_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_usage_record_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_record")),
        sa.UniqueConstraint("run_id", name=op.f("uq_usage_record_run_id")),
    )
    op.create_index(
        "ix_usage_record_tenant_period", "usage_record", ["tenant_id", "period_start"], unique=False
    )
    op.create_index(
        "ix_usage_record_unreported",
        "usage_record",
        ["report_state", "tenant_id"],
        unique=False,
        postgresql_where=sa.text("report_state IN ('pending', 'sending')"),
    )

    # The built-in catalogue; Stripe price ids are set by `switchboard billing sync-plans`.
    plan = sa.table(
        "plan",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("seat_price_cents", sa.Integer),
        sa.column("included_tokens", sa.BigInteger),
        sa.column("active", sa.Boolean),
    )
    op.bulk_insert(
        plan,
        [
            {
                "code": "starter",
                "name": "Starter",
                "seat_price_cents": 1000,
                "included_tokens": 1_000_000,
                "active": True,
            },
            {
                "code": "team",
                "name": "Team",
                "seat_price_cents": 2500,
                "included_tokens": 5_000_000,
                "active": True,
            },
            {
                "code": "business",
                "name": "Business",
                "seat_price_cents": 6000,
                "included_tokens": 25_000_000,
                "active": True,
            },
        ],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_usage_record_unreported",
        table_name="usage_record",
        postgresql_where=sa.text("report_state IN ('pending', 'sending')"),
    )
    op.drop_index("ix_usage_record_tenant_period", table_name="usage_record")
    op.drop_table("usage_record")
    op.drop_index(
        "uq_subscription_live_tenant",
        table_name="subscription",
        postgresql_where=sa.text("status NOT IN ('canceled', 'failed', 'incomplete_expired')"),
    )
    op.drop_table("subscription")
    op.drop_table("billing_customer")
    op.drop_index(
        "ix_stripe_event_unprocessed",
        table_name="stripe_event",
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.drop_table("stripe_event")
    op.drop_table("plan")
