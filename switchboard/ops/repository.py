"""Queries of the operational records."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import TaskFailure


class OpsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_task_failure(self, failure: TaskFailure) -> None:
        self.session.add(failure)
        await self.session.flush()

    async def recent_task_failures(
        self, *, limit: int, task_name: str | None = None
    ) -> list[TaskFailure]:
        """Newest first."""
        query = select(TaskFailure).order_by(TaskFailure.failed_at.desc()).limit(limit)
        if task_name is not None:
            query = query.where(TaskFailure.task_name == task_name)
        return list((await self.session.scalars(query)).all())
