"""Jobs buffered in a unit of work reach a real worker only after the commit."""

from __future__ import annotations

import asyncio
import uuid

from celery import Celery
from celery.result import AsyncResult
from redis.asyncio import Redis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.kit.db import create_sessionmaker
from switchboard.kit.jobs import Job
from switchboard.kit.uow import UnitOfWork
from switchboard.models import TaskFailure
from switchboard.ops.schemas import TaskFailureCreate
from switchboard.ops.service import record_task_failure
from tests.support.worker import WorkerProcess
from workers.sender import CeleryJobSender


class KeepIds(CeleryJobSender):
    def __init__(self, app: Celery) -> None:
        super().__init__(app)
        self.ids: list[str] = []

    async def send(self, jobs):  # type: ignore[no-untyped-def]
        self.ids += await super().send(jobs)
        return self.ids


async def test_worker_sees_the_rows_of_the_transaction_that_enqueued_it(
    engine: AsyncEngine, celery_app: Celery, worker: WorkerProcess
) -> None:
    marker = f"enqueue-{uuid.uuid4().hex}"
    sender = KeepIds(celery_app)
    try:
        async with UnitOfWork(create_sessionmaker(engine), sender) as uow:
            await record_task_failure(
                uow.session,
                TaskFailureCreate(
                    task_id=marker,
                    task_name="tests.marker",
                    call_args=[],
                    call_kwargs={},
                    exception_type="None",
                    message="",
                    traceback="",
                ),
            )
            uow.jobs.enqueue("tests.read_failure", marker)
            # Give a premature send every chance to be picked up before the commit.
            await asyncio.sleep(0.3)
            assert sender.ids == []

        [task_id] = sender.ids
        seen = await asyncio.to_thread(AsyncResult(task_id, app=celery_app).get, timeout=10)
        assert seen == "tests.marker"
    finally:
        async with engine.begin() as conn:
            await conn.execute(delete(TaskFailure).where(TaskFailure.task_id == marker))


async def test_jobs_of_tasks_without_results_store_none(
    celery_app: Celery, worker: WorkerProcess, redis: Redis
) -> None:
    """A job sent by name must not ask for a result its task does not keep: the worker would
    store a STARTED state before running it (two round trips before the task starts) and the
    sender would subscribe to a result channel nobody reads."""
    key = f"tests:mark:{uuid.uuid4().hex}"
    [task_id] = await CeleryJobSender(celery_app).send([Job("tests.mark", (key,))])

    async with asyncio.timeout(10):
        while not await redis.exists(key):
            await asyncio.sleep(0.02)

    # The STARTED state would have been stored before the task ran.
    assert not await redis.exists(celery_app.backend.get_key_for_task(task_id))
    assert AsyncResult(task_id, app=celery_app).state == "PENDING"
