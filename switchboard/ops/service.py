"""Operational records: failed tasks in Postgres, beat's heartbeat in Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import TaskFailure
from switchboard.ops.repository import OpsRepository
from switchboard.ops.schemas import TaskFailureCreate, TaskFailureRead

_MAX_TEXT = 20_000


def _json_safe(value: Any) -> Any:
    # Task arguments are JSON already (the broker serializer is JSON); this guards the odd
    # object a caller passed to apply() directly.
    return json.loads(json.dumps(value, default=repr))


async def record_task_failure(session: AsyncSession, failure: TaskFailureCreate) -> TaskFailure:
    row = TaskFailure(
        task_id=failure.task_id,
        task_name=failure.task_name,
        call_args=_json_safe(failure.call_args),
        call_kwargs=_json_safe(failure.call_kwargs),
        exception_type=failure.exception_type,
        message=failure.message[:_MAX_TEXT],
        traceback=failure.traceback[-_MAX_TEXT:],
        request_id=failure.request_id,
        retries=failure.retries,
    )
    await OpsRepository(session).add_task_failure(row)
    return row


async def recent_task_failures(
    session: AsyncSession, *, limit: int = 50, task_name: str | None = None
) -> list[TaskFailureRead]:
    """Newest first; only those of ``task_name`` if given."""
    rows = await OpsRepository(session).recent_task_failures(limit=limit, task_name=task_name)
    return [TaskFailureRead.model_validate(row) for row in rows]


HEARTBEAT_KEY = "switchboard:heartbeat"


async def record_heartbeat(redis: Redis) -> None:
    now = datetime.now(UTC).isoformat()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(HEARTBEAT_KEY, "at", now)
        pipe.hincrby(HEARTBEAT_KEY, "count", 1)
        await pipe.execute()


async def last_heartbeat(redis: Redis) -> datetime | None:
    raw = await redis.hget(HEARTBEAT_KEY, "at")
    if raw is None:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)


def heartbeat_is_stale(at: datetime | None, *, period_seconds: float, now: datetime) -> bool:
    """Beat is taken for dead when no heartbeat ran for two of its periods (one late
    heartbeat is no outage)."""
    return at is None or (now - at).total_seconds() > 2 * period_seconds
