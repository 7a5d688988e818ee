"""Signing keys: public halves and lifecycle in Postgres; private halves live in a key store."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base


class KeyState(enum.StrEnum):
    next = "next"
    active = "active"
    retired = "retired"
    removed = "removed"


class SigningKey(Base):
    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[KeyState] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(String(64))
    store_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("state IN ('next', 'active', 'retired', 'removed')", name="state_known"),
        # At most one key signs and at most one waits to: two rotations racing each other
        # cannot both succeed.
        Index(
            "uq_signing_key_one_active",
            "state",
            unique=True,
            postgresql_where=text("state = 'active'"),
        ),
        Index(
            "uq_signing_key_one_next",
            "state",
            unique=True,
            postgresql_where=text("state = 'next'"),
        ),
    )
