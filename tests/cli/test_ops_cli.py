"""`switchboard ops`: failed tasks and beat's heartbeat, as an operator reads them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.kit.db import SessionMaker
from switchboard.models import TaskFailure
from switchboard.ops.service import HEARTBEAT_KEY, record_heartbeat
from switchboard.settings import Settings
from tests.ops.test_service import failure

runner = CliRunner()


@pytest.fixture
async def failed_task(committed: SessionMaker) -> AsyncIterator[str]:
    """Two committed failures of a task of its own (the command reads what is committed)."""
    name = f"tests.ops.{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with committed() as session, session.begin():
        session.add_all(
            [
                failure(name, now - timedelta(minutes=2), task_id="t-old", message="older"),
                failure(
                    name,
                    now - timedelta(minutes=1),
                    task_id="t-new",
                    message="boom\nTraceback follows",
                    request_id="req-42",
                    retries=3,
                ),
            ]
        )
    yield name
    async with committed() as session, session.begin():
        await session.execute(delete(TaskFailure).where(TaskFailure.task_name == name))


@pytest.fixture
async def heartbeat_cleared(redis: Redis) -> AsyncIterator[None]:
    await redis.delete(HEARTBEAT_KEY)
    yield
    await redis.delete(HEARTBEAT_KEY)


async def test_failures_are_listed_newest_first_one_line_each(failed_task: str) -> None:
    result = await asyncio.to_thread(runner.invoke, app, ["ops", "failures", "--task", failed_task])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert f"  {failed_task}  t-new  retries=3  request_id=req-42  ValueError: boom" in lines[0]
    assert lines[0].endswith("ValueError: boom")
    assert f"  {failed_task}  t-old  retries=0  request_id=-  ValueError: older" in lines[1]
    assert "2 failed tasks shown" in result.stderr


async def test_failures_limit(failed_task: str) -> None:
    result = await asyncio.to_thread(
        runner.invoke, app, ["ops", "failures", "--task", failed_task, "--limit", "1"]
    )

    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert "t-new" in line


@pytest.mark.usefixtures("engine")  # the test database, migrated
def test_failures_of_a_task_that_never_failed() -> None:
    result = runner.invoke(app, ["ops", "failures", "--task", "tests.never-failed"])

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 failed tasks shown" in result.stderr


@pytest.mark.usefixtures("heartbeat_cleared")
async def test_heartbeat_exits_1_until_beat_ran_and_again_once_it_stopped(
    redis: Redis, settings: Settings
) -> None:
    never = await asyncio.to_thread(runner.invoke, app, ["ops", "heartbeat"])
    await record_heartbeat(redis)
    fresh = await asyncio.to_thread(runner.invoke, app, ["ops", "heartbeat"])
    long_ago = datetime.now(UTC) - timedelta(seconds=3 * settings.beat.heartbeat_seconds)
    await redis.hset(HEARTBEAT_KEY, "at", long_ago.isoformat())
    stale = await asyncio.to_thread(runner.invoke, app, ["ops", "heartbeat"])

    assert never.exit_code == 1
    assert "no heartbeat recorded" in never.stderr
    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout.startswith("last heartbeat ")
    assert stale.exit_code == 1
    assert "ago)" in stale.stdout
    assert "stale" in stale.stderr
