"""Plans, tenants' Stripe customers and subscriptions, metered usage and received webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base, CreatedAt, UUIDPrimaryKey

SUBSCRIPTION_STATUSES = (
    "pending",  # our intent, not yet created at Stripe
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "paused",
    "canceled",
    "failed",  # Stripe refused to create it
)
# A subscription in one of these is history: the tenant may start another.
ENDED_STATUSES = ("canceled", "failed", "incomplete_expired")


class Plan(CreatedAt, Base):
    __tablename__ = "plan"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    seat_price_cents: Mapped[int]
    included_tokens: Mapped[int] = mapped_column(BigInteger)
    stripe_seat_price_id: Mapped[str | None] = mapped_column(String(100))
    stripe_usage_price_id: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Limits of a tenant on this plan; None is unlimited. A subscription's own `seats` (what
    # it pays for) is the seat limit of a subscribed tenant, and at most `max_seats`.
    max_seats: Mapped[int | None]
    runs_per_minute: Mapped[int | None]
    concurrent_runs: Mapped[int | None]
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    open_streams_per_user: Mapped[int | None]


class BillingCustomer(CreatedAt, Base):
    __tablename__ = "billing_customer"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100), unique=True)


class Subscription(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "subscription"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    plan_code: Mapped[str] = mapped_column(ForeignKey("plan.code"))
    seats: Mapped[int]
    status: Mapped[str] = mapped_column(String(24), default="pending")
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    stripe_item_id: Mapped[str | None] = mapped_column(String(100))
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    # The desired state awaiting a sync to Stripe, and how many syncs were asked for: a
    # sync task sends the newest intent, keyed by this counter, so each is sent once.
    sync_version: Mapped[int] = mapped_column(default=1)
    synced_version: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Created time of the newest Stripe event applied, so an older one never wins.
    stripe_event_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in SUBSCRIPTION_STATUSES) + ")",
            name="status_known",
        ),
        CheckConstraint("seats >= 1", name="seats_positive"),
        # One live subscription per tenant; canceled or failed ones stay as history.
        Index(
            "uq_subscription_live_tenant",
            "tenant_id",
            unique=True,
            postgresql_where=text(
                "status NOT IN (" + ", ".join(f"'{s}'" for s in ENDED_STATUSES) + ")"
            ),
        ),
    )


class UsageRecord(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "usage_record"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID] = mapped_column(unique=True)  # one record per run, ever
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    period_start: Mapped[datetime]
    # pending -> sending (in a batch whose meter event may have reached Stripe) -> reported;
    # skipped when the tenant has no Stripe customer to bill.
    report_state: Mapped[str] = mapped_column(String(16), default="pending")
    report_batch_id: Mapped[uuid.UUID | None]
    reported_quantity: Mapped[int | None] = mapped_column(BigInteger)
    stripe_identifier: Mapped[str | None] = mapped_column(String(100))
    report_attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "report_state IN ('pending', 'sending', 'reported', 'skipped')", name="state_known"
        ),
        Index("ix_usage_record_tenant_period", "tenant_id", "period_start"),
        # Marking a batch reported (or failed) finds its rows by batch id.
        Index("ix_usage_record_report_batch_id", "report_batch_id"),
        Index(
            "ix_usage_record_unreported",
            "report_state",
            "tenant_id",
            postgresql_where=text("report_state IN ('pending', 'sending')"),
        ),
    )


class StripeEvent(Base):
    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # Stripe's evt_...
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    stripe_created_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    processed_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(16))  # applied, stale, ignored
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_stripe_event_unprocessed",
            "received_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
        Index("ix_stripe_event_processed_at", "processed_at"),
    )


class UsageThreshold(Base):
    """A share of the month's tokens a tenant crossed, recorded once per tenant and period."""

    __tablename__ = "usage_threshold"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    percent: Mapped[int] = mapped_column(primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    limit_tokens: Mapped[int] = mapped_column(BigInteger)
    reached_at: Mapped[datetime] = mapped_column(server_default=func.now())
