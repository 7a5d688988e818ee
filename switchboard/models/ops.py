"""Operational records kept by the workers themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from switchboard.models.base import Base, UUIDPrimaryKey


class TaskFailure(UUIDPrimaryKey, Base):
    """A task that raised: kept so a failure outlives Flower's in-memory view and the logs."""

    __tablename__ = "task_failure"

    task_id: Mapped[str] = mapped_column(String(64), index=True)
    task_name: Mapped[str] = mapped_column(String(200), index=True)
    call_args: Mapped[list[Any]] = mapped_column(JSONB)
    call_kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    exception_type: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    retries: Mapped[int] = mapped_column(default=0)
    failed_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
