"""Tenants, users and everything that proves who a user is."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    and_,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base, CreatedAt, UUIDPrimaryKey

ROLES = ("owner", "admin", "member", "billing")


class Tenant(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "tenant"

    name: Mapped[str] = mapped_column(String(200))
    # Days an idle conversation is kept; None: RETENTION_CONVERSATION_DAYS.
    retention_days: Mapped[int | None]


class User(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "user"

    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(100))
    pepper_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="active")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    is_platform_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    password_changed_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        # Case-insensitive uniqueness: "A@x.io" and "a@x.io" are one account.
        Index("uq_user_email_lower", func.lower(email), unique=True),
        CheckConstraint("status IN ('active', 'disabled')", name="status_known"),
    )


class UserProfile(CreatedAt, Base):
    __tablename__ = "user_profile"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str | None] = mapped_column(String(200))


class Membership(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "membership"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("user_id", "tenant_id"),
        CheckConstraint("role IN ('owner', 'admin', 'member', 'billing')", name="role_known"),
    )


class UserLoginEvent(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "user_login_event"

    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), index=True
    )
    email_hash: Mapped[str] = mapped_column(String(64))
    ip_hash: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_user_login_event_created_at", "created_at"),)


class RefreshToken(UUIDPrimaryKey, Base):
    """One link of a rotation chain; the plaintext token is never stored."""

    __tablename__ = "refresh_token"

    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    parent_id: Mapped[uuid.UUID | None]
    selector: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    signing_kid: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    client_fingerprint: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    family_expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class PasswordResetToken(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "password_reset_token"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    selector: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Invitation(UUIDPrimaryKey, CreatedAt, Base):
    """An invitation to join a tenant with a role; its link's token is stored as a peppered
    hash, like a reset token's. Pending while neither accepted, revoked nor expired."""

    __tablename__ = "invitation"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    selector: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    revoked_at: Mapped[datetime | None]

    @classmethod
    def pending_at(cls, now: datetime) -> ColumnElement[bool]:
        """Neither accepted, revoked nor expired at ``now``: it can be accepted, and it holds a
        seat."""
        return and_(cls.accepted_at.is_(None), cls.revoked_at.is_(None), cls.expires_at > now)

    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member', 'billing')", name="role_known"),
        # One open invitation per address and tenant (an expired one is revoked on re-invite).
        Index(
            "uq_invitation_open_email",
            "tenant_id",
            func.lower(email),
            unique=True,
            postgresql_where="accepted_at IS NULL AND revoked_at IS NULL",
        ),
    )


class ServiceAccount(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "service_account"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default="active")


class ServiceAccountCredential(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "service_account_credential"

    service_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("service_account.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
