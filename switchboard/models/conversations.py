"""Conversations, their messages, and the agent runs that answer them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from switchboard.models.base import Base, CreatedAt, UUIDPrimaryKey

RUN_STATUSES = ("queued", "running", "requires_action", "succeeded", "failed", "cancelled")


class Conversation(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "conversation"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        # Listing is "my conversations, most recent first", paged by (updated_at, id).
        Index("ix_conversation_owner_recent", "tenant_id", "user_id", "updated_at", "id"),
        # Retention finds idle conversations across tenants.
        Index("ix_conversation_updated_at", "updated_at"),
    )


class Run(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "run"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    entry_agent: Mapped[str] = mapped_column(String(64))
    final_agent: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    # Of input_tokens, those the provider read from its prompt cache.
    cached_input_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # A run waiting for the runs before it in its conversation holds its message here until its
    # turn; then the message joins the conversation and the run is queued (queued_at).
    pending_message: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None]
    # Set by a later chat that stops this run: interrupt (keep what it said) or rollback.
    stop: Mapped[str | None] = mapped_column(String(16))
    # A run waiting for tool approvals (requires_action): the Agents SDK's serialized run
    # state with what the run said and numbered before the pause, and when it paused.
    paused: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None]

    # Never loaded (lazy="raise"): declared so that one flush inserts a new conversation, its
    # run and the run's message in foreign-key order.
    conversation: Mapped[Conversation] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'requires_action', 'succeeded', 'failed',"
            " 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("stop IS NULL OR stop IN ('interrupt', 'rollback')", name="stop_known"),
        Index("ix_run_status_started_at", "status", "started_at"),
        Index(
            "ix_run_conversation_unfinished",
            "conversation_id",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running', 'requires_action')"),
        ),
        Index(
            "ix_run_waiting_paused_at",
            "paused_at",
            postgresql_where=text("status = 'requires_action'"),
        ),
    )


class RunApproval(UUIDPrimaryKey, CreatedAt, Base):
    """A tool call a waiting run needs a person's decision on; decided once."""

    __tablename__ = "run_approval"

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(200))
    arguments: Mapped[str] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(64))
    approved: Mapped[bool | None]
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("run_id", "call_id"),)


class Message(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "message"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    agent: Mapped[str | None] = mapped_column(String(64))
    # A reply cut short by a cancel: what the client was sent before it.
    incomplete: Mapped[bool] = mapped_column(default=False, server_default=false())
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("run.id", ondelete="SET NULL"), index=True
    )
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]

    run: Mapped[Run | None] = relationship(lazy="raise")  # as Run.conversation

    __table_args__ = (
        UniqueConstraint("conversation_id", "position"),
        CheckConstraint("role IN ('user', 'assistant')", name="role_known"),
    )
