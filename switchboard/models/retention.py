"""Tenant data deletion requests: the audit trail of "delete all our data"."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base, UUIDPrimaryKey


class TenantDataDeletion(UUIDPrimaryKey, Base):
    __tablename__ = "tenant_data_deletion"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    # No foreign key: the record outlives the user who asked.
    requested_by: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    requested_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deleted: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status_known"),
    )
