"""The production Celery app plus tasks that only tests need (failures on demand)."""

from __future__ import annotations

from kombu import Queue
from sqlalchemy import select

from switchboard.models import TaskFailure
from workers.celery_app import celery_app, runtime

__all__ = ["IDLE_QUEUE", "ISOLATED_QUEUE", "celery_app"]

# No shared worker consumes it: for a test that must know which process runs its task.
ISOLATED_QUEUE = "tests-isolated"
# No task is ever sent to it: a worker started on it starts up taking no work at all, and takes
# its real queue when told to (tests/support/worker.py, ``take_queue``).
IDLE_QUEUE = "tests-idle"
_default = celery_app.conf.task_queues[0]
celery_app.conf.task_queues = [
    *celery_app.conf.task_queues,
    Queue(ISOLATED_QUEUE, _default.exchange, routing_key=ISOLATED_QUEUE),
    Queue(IDLE_QUEUE, _default.exchange, routing_key=IDLE_QUEUE),
]


@celery_app.task(name="tests.fail", ignore_result=False)
def fail(reason: str) -> None:
    raise ValueError(reason)


@celery_app.task(name="tests.read_failure", ignore_result=False)
def read_failure(task_id: str) -> str | None:
    """Reads a row by id on the worker's own connection: proves it was committed first."""

    async def read() -> str | None:
        async with runtime.resources.sessionmaker() as session:
            query = select(TaskFailure.task_name).where(TaskFailure.task_id == task_id)
            return await session.scalar(query)

    return runtime.run(read())


@celery_app.task(name="tests.mark")
def mark(key: str) -> str:
    """Leaves ``key`` in Redis: a trace of having run for a task that keeps no result."""
    runtime.run(runtime.resources.redis.set(key, b"1", ex=60))
    return key
