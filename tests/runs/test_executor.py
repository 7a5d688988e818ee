"""A run's final write survives a moment without database connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from switchboard.agents.factory import create_agent_runtime
from switchboard.conversations.repository import ConversationRepository
from switchboard.kit.db import SessionMaker, create_engine
from switchboard.runs.backend import DatabaseToolBackend
from switchboard.runs.cancel import CancelNotices
from switchboard.runs.emitter import RunEmitter
from switchboard.runs.events import EventPublisher, lease_key, replay
from switchboard.runs.executor import RunExecutor, _Progress
from switchboard.runs.repository import ClaimedRun, NewRun, Reply, RunRepository
from switchboard.runs.schemas import Usage
from switchboard.settings import Settings
from tests.runs.test_sweep import _run, _status


@pytest.fixture
async def one_connection(settings: Settings, migrated_database: str) -> AsyncIterator[AsyncEngine]:
    """A pool of exactly one connection that gives up waiting for it after 0.2 s."""
    database = settings.database.model_copy(
        update={"pool_size": 1, "max_overflow": 0, "pool_timeout_seconds": 0.2}
    )
    engine = create_engine(database)
    yield engine
    await engine.dispose()


async def _running(
    committed: SessionMaker, sessionmaker: SessionMaker, redis: Redis, settings: Settings
) -> tuple[RunExecutor, ClaimedRun, _Progress]:
    """A run (created through ``committed``) claimed by an executor on ``sessionmaker``, and
    the run's progress with event 1 (``run.queued``) already published."""
    run_id = await _run(committed, status="queued", age=timedelta(seconds=1))
    publisher = EventPublisher(redis, max_events=100, ttl_seconds=60)
    runtime = create_agent_runtime(settings.openai, settings.offline)
    executor = RunExecutor(
        sessionmaker=sessionmaker,
        redis=redis,
        publisher=publisher,
        registry=runtime.registry,
        run_config=runtime.run_config,
        backend=DatabaseToolBackend(sessionmaker),
        settings=settings.runs,
        notices=CancelNotices(redis),
    )
    run = await executor._claim(str(run_id))
    assert run is not None
    progress = _Progress(agent="triage", events=RunEmitter(publisher, str(run_id), last=1))
    return executor, run, progress


async def test_the_final_write_waits_out_a_busy_pool(
    one_connection: AsyncEngine, engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    committed = async_sessionmaker(engine, expire_on_commit=False)
    sessionmaker = async_sessionmaker(one_connection, expire_on_commit=False)
    executor, run, progress = await _running(committed, sessionmaker, redis, settings)
    run_id = run.id

    failed_before = _failed("agent_error")
    held = await one_connection.connect()  # every other checkout times out meanwhile
    finishing = asyncio.create_task(executor._finish_failed(run, progress, "agent_error", "x"))
    await asyncio.sleep(1.0)
    assert not finishing.done()
    assert await redis.exists(lease_key(str(run_id)))  # renewed while it waits
    await held.close()
    await asyncio.wait_for(finishing, timeout=10)

    assert await _status(committed, run_id) == ("failed", "agent_error")
    events = await replay(redis, str(run_id), after=0)
    assert [event.type for event in events][-1] == "run.failed"
    assert _failed("agent_error") == failed_before + 1


def _failed(code: str) -> float:
    return REGISTRY.get_sample_value("runs_failed_total", {"code": code}) or 0.0


async def test_a_reply_takes_the_position_after_a_message_added_meanwhile(
    engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """The API adds a message under the conversation's lock; a reply stored at that moment
    waits for the lock and takes the next position instead of colliding with it."""
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    executor, run, progress = await _running(sessionmaker, sessionmaker, redis, settings)
    run_id = run.id
    progress.replies.append(Reply(uuid.uuid4(), "the reply", "triage"))
    progress.reported = Usage(input_tokens=1, output_tokens=2)

    async with sessionmaker() as api, api.begin():
        follow_up = NewRun(
            id=uuid.uuid4(),
            tenant_id=run.tenant_id,
            user_id=run.user_id,
            conversation_id=run.conversation_id,
            agent="triage",
            message="next",
        )
        assert await RunRepository(api).start_in_conversation(follow_up, now=datetime.now(UTC))
        finishing = asyncio.create_task(executor._finish_succeeded(run, progress))
        await asyncio.sleep(0.5)
        assert not finishing.done()  # waiting for the conversation's lock
    await asyncio.wait_for(finishing, timeout=10)

    assert await _status(sessionmaker, run_id) == ("succeeded", None)
    async with sessionmaker() as session:
        stored = await ConversationRepository(session).messages(run.conversation_id)
    assert [(m.position, m.content) for m in stored] == [(0, "next"), (1, "the reply")]
