"""The unit of work commits or rolls back, and sends its jobs only after a commit."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import Job
from switchboard.kit.uow import UnitOfWork
from switchboard.models import TaskFailure
from switchboard.ops.schemas import TaskFailureCreate
from switchboard.ops.service import record_task_failure


class RecordingSender:
    """Sees what would go to the broker, and whether the rows were committed by then."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        self.sessionmaker = sessionmaker
        self.sent: list[Job] = []
        self.rows_visible_at_send: list[int] = []

    async def send(self, jobs: Sequence[Job]) -> list[str]:
        async with self.sessionmaker() as session:
            self.rows_visible_at_send.append(await _count(session))
        self.sent.extend(jobs)
        return [str(index) for index, _ in enumerate(jobs)]


TASK_IDS = ("t-1", "t-2", "t-3")


def _failure(task_id: str) -> TaskFailureCreate:
    return TaskFailureCreate(
        task_id=task_id,
        task_name="tests.example",
        call_args=[1],
        call_kwargs={},
        exception_type="ValueError",
        message="nope",
        traceback="",
    )


async def _count(session: AsyncSession) -> int:
    """Rows of this module's failures (workers of other tests record theirs too)."""
    query = select(func.count()).where(TaskFailure.task_id.in_(TASK_IDS))
    return int(await session.scalar(query) or 0)


async def test_jobs_are_sent_after_commit(sessionmaker: SessionMaker) -> None:
    sender = RecordingSender(sessionmaker)

    async with UnitOfWork(sessionmaker, sender) as uow:
        await record_task_failure(uow.session, _failure("t-1"))
        uow.jobs.enqueue("system.ping", queue="maintenance")
        assert sender.sent == []

    assert [job.name for job in sender.sent] == ["system.ping"]
    assert sender.rows_visible_at_send == [1]


async def test_jobs_are_dropped_on_rollback(sessionmaker: SessionMaker) -> None:
    sender = RecordingSender(sessionmaker)

    with pytest.raises(RuntimeError):
        async with UnitOfWork(sessionmaker, sender) as uow:
            await record_task_failure(uow.session, _failure("t-2"))
            uow.jobs.enqueue("system.ping")
            raise RuntimeError("handler failed")

    assert sender.sent == []
    async with sessionmaker() as session:
        assert await _count(session) == 0


async def test_jobs_are_dropped_when_the_commit_fails(sessionmaker: SessionMaker) -> None:
    sender = RecordingSender(sessionmaker)

    with pytest.raises(IntegrityError):
        async with UnitOfWork(sessionmaker, sender) as uow:
            uow.session.add(TaskFailure(task_id="t-3"))  # required columns missing
            uow.jobs.enqueue("system.ping")

    assert sender.sent == []


async def test_session_is_closed_after_the_unit_of_work(sessionmaker: SessionMaker) -> None:
    uow = UnitOfWork(sessionmaker, RecordingSender(sessionmaker))
    async with uow:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        _ = uow.session
