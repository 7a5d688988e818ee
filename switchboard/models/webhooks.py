"""Outbound webhooks: tenants' endpoints, the events written with the changes they report
(the outbox), one delivery per event and endpoint, and the log of every attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base, CreatedAt, UUIDPrimaryKey

DELIVERY_STATUSES = (
    "pending",  # waits for next_attempt_at, when the dispatcher sends it
    "queued",  # its job is on the broker; lease_until bounds how long that may take
    "sending",  # a worker is attempting it; lease_until bounds how long that may take
    "succeeded",
    "failed",  # out of attempts, or its endpoint was disabled or deleted
)
ATTEMPT_STATUSES = ("succeeded", "failed", "endpoint_disabled")


class WebhookEndpoint(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "webhook_endpoint"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Signing secrets, AES-GCM sealed: the current one, and the one it replaced, which keeps
    # signing alongside until previous_secret_expires_at.
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    # Since when every attempt has failed; any success clears it.
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class WebhookEvent(UUIDPrimaryKey, CreatedAt, Base):
    """Written in the transaction of the change it reports; its id is every delivery's
    ``webhook-id``."""

    __tablename__ = "webhook_event"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)

    # Retention deletes by age.
    __table_args__ = (Index("ix_webhook_event_created_at", "created_at"),)


class WebhookDelivery(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "webhook_delivery"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_event.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in DELIVERY_STATUSES)), "status_known"
        ),
        # The dispatcher's scan: deliveries not finished, by when they are due.
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'queued', 'sending')"),
        ),
    )


class WebhookAttempt(UUIDPrimaryKey, CreatedAt, Base):
    """One request to a receiver, or the note that its endpoint was disabled."""

    __tablename__ = "webhook_attempt"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(String(24))
    response_status: Mapped[int | None]
    duration_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(64))
    next_attempt_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in ATTEMPT_STATUSES)), "status_known"
        ),
        # The delivery log of an endpoint, newest first, paged by (created_at, id).
        Index("ix_webhook_attempt_endpoint_created", "endpoint_id", "created_at", "id"),
    )
