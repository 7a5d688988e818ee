"""Operational records: failed tasks newest first, and beat's heartbeat."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from switchboard.kit.db import SessionMaker
from switchboard.models import TaskFailure
from switchboard.ops.service import (
    HEARTBEAT_KEY,
    heartbeat_is_stale,
    last_heartbeat,
    recent_task_failures,
    record_heartbeat,
)
from switchboard.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def failure(task_name: str, failed_at: datetime, **fields: object) -> TaskFailure:
    values: dict[str, object] = {
        "task_id": uuid.uuid4().hex,
        "task_name": task_name,
        "call_args": [],
        "call_kwargs": {},
        "exception_type": "ValueError",
        "message": "nope",
        "traceback": "",
        "failed_at": failed_at,
    }
    values.update(fields)
    return TaskFailure(**values)


@pytest.fixture
async def heartbeat_cleared(redis: Redis) -> AsyncIterator[None]:
    await redis.delete(HEARTBEAT_KEY)
    yield
    await redis.delete(HEARTBEAT_KEY)


async def test_recent_failures_are_newest_first_and_filtered_by_task(
    sessionmaker: SessionMaker,
) -> None:
    mine, other = f"tests.{uuid.uuid4().hex[:8]}", f"tests.{uuid.uuid4().hex[:8]}"
    async with sessionmaker() as session, session.begin():
        session.add_all(
            [
                failure(mine, NOW - timedelta(hours=2), message="older"),
                failure(mine, NOW - timedelta(hours=1), message="newer"),
                failure(other, NOW, message="elsewhere"),
            ]
        )

    async with sessionmaker() as session:
        both = await recent_task_failures(session, task_name=mine)
        newest = await recent_task_failures(session, task_name=mine, limit=1)
        everything = await recent_task_failures(session, limit=1000)

    assert [row.message for row in both] == ["newer", "older"]
    assert [row.message for row in newest] == ["newer"]
    assert {mine, other} <= {row.task_name for row in everything}
    stamps = [row.failed_at for row in everything]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.usefixtures("heartbeat_cleared")
async def test_the_last_heartbeat_is_when_the_task_last_ran(
    redis: Redis, settings: Settings
) -> None:
    assert await last_heartbeat(redis) is None

    before = datetime.now(UTC)
    await record_heartbeat(redis)
    await record_heartbeat(redis)

    at = await last_heartbeat(redis)
    assert at is not None
    assert before <= at <= datetime.now(UTC)
    assert int(await redis.hget(HEARTBEAT_KEY, "count") or 0) == 2
    # A client that decodes answers reads the same moment.
    decoding = Redis.from_url(str(settings.redis.url), decode_responses=True)
    try:
        assert await last_heartbeat(decoding) == at
    finally:
        await decoding.aclose()


def test_a_heartbeat_is_stale_after_two_periods() -> None:
    assert heartbeat_is_stale(None, period_seconds=60, now=NOW)
    assert not heartbeat_is_stale(NOW - timedelta(seconds=90), period_seconds=60, now=NOW)
    assert not heartbeat_is_stale(NOW - timedelta(seconds=120), period_seconds=60, now=NOW)
    assert heartbeat_is_stale(NOW - timedelta(seconds=121), period_seconds=60, now=NOW)
