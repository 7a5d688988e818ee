"""A real worker process consuming from the real Redis broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from celery import Celery
from celery.result import AsyncResult
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.models import TaskFailure
from tests.support.waiting import eventually
from tests.support.worker import WorkerProcess


def test_ping_round_trip(celery_app: Celery, worker: WorkerProcess) -> None:
    assert celery_app.send_task("system.ping").get(timeout=10) == "pong"


def test_tasks_are_routed_to_their_named_queues(celery_app: Celery) -> None:
    router = celery_app.amqp.router
    expected = {
        "runs.execute": "runs",
        "auth.keys.rotate": "maintenance",
        "billing.usage.report": "maintenance",
        "retention.run": "maintenance",
        "system.ping": "maintenance",
        "anything.else": "default",
    }
    for name, queue in expected.items():
        assert router.route({}, name, (), {})["queue"].name == queue


def test_many_async_tasks_in_a_row_share_one_process_loop(
    celery_app: Celery, worker: WorkerProcess
) -> None:
    """200 tasks that each use Postgres and Redis through the process's own event loop."""
    results = [celery_app.send_task("system.check") for _ in range(200)]
    answers = [result.get(timeout=60) for result in results]

    assert {answer["pid"] for answer in answers} == {answers[0]["pid"]}
    failed = [answer for answer in answers if answer["status"] != "ok"]
    assert failed == []
    assert "attached to a different loop" not in worker.log()
    assert "Event loop is closed" not in worker.log()


async def test_failing_task_is_reported_and_recorded(
    celery_app: Celery, worker: WorkerProcess, engine: AsyncEngine
) -> None:
    reason = f"boom-{uuid.uuid4().hex}"
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    result = celery_app.send_task("tests.fail", args=[reason], headers={"request_id": request_id})

    with pytest.raises(ValueError, match=reason):
        await _wait(result)
    assert result.state == "FAILURE"

    async def failure_row() -> Row[tuple[TaskFailure]] | None:
        async with engine.connect() as conn:
            query = select(TaskFailure).where(TaskFailure.task_id == result.id)
            return (await conn.execute(query)).one_or_none()

    row = await eventually(failure_row)
    assert row.task_name == "tests.fail"
    assert row.call_args == [reason]
    assert row.exception_type == "ValueError"
    assert reason in row.message
    assert "raise ValueError(reason)" in row.traceback
    assert row.request_id == request_id
    assert f'"task_id": "{result.id}"' in worker.log()


async def _wait(result: AsyncResult) -> object:
    return await asyncio.to_thread(result.get, timeout=10)
