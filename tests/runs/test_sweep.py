"""The sweep of lost and never-started runs, and event numbering across a Redis data loss."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import select, update

from switchboard.kit.db import SessionMaker
from switchboard.models import Conversation, Message, Run, Tenant, User
from switchboard.runs.emitter import RunEmitter
from switchboard.runs.events import (
    EventPublisher,
    EventType,
    lease_key,
    replay,
    stream_key,
    suspect_key,
)
from switchboard.runs.jobs import EXECUTE
from switchboard.runs.repository import NewRun, RunRepository
from switchboard.runs.settings import RunsSettings
from switchboard.runs.sweep import QUEUE_TIMEOUT, fail_lost_run, fail_run, sweep_runs
from tests.support.jobs import SentJobs
from tests.support.redis import PrivateRedis

SETTINGS = RunsSettings(lease_seconds=5, queue_timeout_seconds=60)


@pytest.fixture
def publisher(redis: Redis) -> EventPublisher:
    return EventPublisher(redis, max_events=1000, ttl_seconds=300)


async def _run(sessionmaker: SessionMaker, *, status: str, age: timedelta) -> uuid.UUID:
    moment = datetime.now(UTC) - age
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name="t")
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add_all([tenant, user])
        await session.flush()
        conversation = Conversation(
            tenant_id=tenant.id, user_id=user.id, title="c", updated_at=moment
        )
        session.add(conversation)
        await session.flush()
        run = Run(
            tenant_id=tenant.id,
            user_id=user.id,
            conversation_id=conversation.id,
            status=status,
            entry_agent="triage",
            created_at=moment,
            started_at=moment if status == "running" else None,
        )
        session.add(run)
    return run.id


async def _status(sessionmaker: SessionMaker, run_id: uuid.UUID) -> tuple[str, str | None]:
    async with sessionmaker() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        return run.status, run.error_code


async def test_a_run_without_its_lease_fails_on_the_second_sighting(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    lost = await _run(sessionmaker, status="running", age=timedelta(minutes=1))
    alive = await _run(sessionmaker, status="running", age=timedelta(minutes=1))
    await redis.set(lease_key(str(alive)), b"1", ex=30)

    first = await sweep_runs(sessionmaker, redis, publisher, SETTINGS)
    assert (first.suspected, first.lost) == (1, 0)
    assert await _status(sessionmaker, lost) == ("running", None)

    # Seen without a lease for longer than a lease: lost.
    await redis.set(suspect_key(str(lost)), str(time.time() - SETTINGS.lease_seconds - 1))
    failed_before = REGISTRY.get_sample_value("runs_failed_total", {"code": "worker_lost"}) or 0
    second = await sweep_runs(sessionmaker, redis, publisher, SETTINGS)

    assert second.lost == 1
    assert REGISTRY.get_sample_value("runs_failed_total", {"code": "worker_lost"}) == (
        failed_before + 1
    )
    assert await _status(sessionmaker, lost) == ("failed", "worker_lost")
    assert await _status(sessionmaker, alive) == ("running", None)
    [event] = await replay(redis, str(lost), after=0)
    assert event.type is EventType.failed
    assert event.data["error"]["code"] == "worker_lost"


async def test_a_young_run_is_not_suspected(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    await _run(sessionmaker, status="running", age=timedelta(seconds=1))

    report = await sweep_runs(sessionmaker, redis, publisher, SETTINGS)

    assert (report.suspected, report.lost) == (0, 0)


async def test_a_run_queued_too_long_fails_with_queue_timeout(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    stale = await _run(sessionmaker, status="queued", age=timedelta(minutes=5))
    fresh = await _run(sessionmaker, status="queued", age=timedelta(seconds=5))

    report = await sweep_runs(sessionmaker, redis, publisher, SETTINGS)

    assert report.expired >= 1
    assert await _status(sessionmaker, stale) == ("failed", "queue_timeout")
    assert await _status(sessionmaker, fresh) == ("queued", None)


async def test_a_run_that_moved_on_is_not_failed(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    # Seen queued by the sweep, claimed by a worker before the sweep failed it.
    run_id = await _run(sessionmaker, status="running", age=timedelta(minutes=5))

    ended = await fail_run(sessionmaker, publisher, run_id, status="queued", error=QUEUE_TIMEOUT)

    assert not ended
    assert await _status(sessionmaker, run_id) == ("running", None)
    assert await replay(redis, str(run_id), after=0) == []


async def test_numbers_continue_after_redis_lost_the_counter(
    redis: Redis, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    events = RunEmitter(publisher, run_id)
    for index in range(3):
        await events.emit(EventType.message_delta, delta=str(index), agent="a")
    await redis.delete(f"run:{run_id}:seq", stream_key(run_id))  # as after a restart

    await events.emit(EventType.completed, usage={})

    [event] = await replay(redis, run_id, after=0)
    assert (event.seq, event.type) == (4, EventType.completed)


async def test_events_wait_while_redis_is_away_and_go_out_in_order(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    client = Redis(port=server.port, socket_connect_timeout=0.5, socket_timeout=0.5)
    run_id = str(uuid.uuid4())
    events = RunEmitter(EventPublisher(client, max_events=1000, ttl_seconds=300), run_id)
    try:
        await events.emit(EventType.started, agent="triage")  # no server yet
        await events.emit(EventType.message_delta, delta="hi", agent="triage")
        assert events.pending == 2
        assert not await events.flush(within=0)

        server.start()
        assert await events.flush(within=5, pause=0.05)

        assert events.pending == 0
        assert [(e.seq, e.type) for e in await replay(client, run_id, after=0)] == [
            (1, EventType.started),
            (2, EventType.message_delta),
        ]
    finally:
        await client.aclose()
        server.stop()


async def _waiting_behind(
    sessionmaker: SessionMaker, run_id: uuid.UUID, message: str, *, said: str | None = None
) -> NewRun:
    """A run waiting for its turn after ``run_id``, whose own message (``said``) is stored."""
    async with sessionmaker() as session, session.begin():
        run = await session.get(Run, run_id)
        assert run is not None
        if said is not None:
            session.add(
                Message(conversation_id=run.conversation_id, position=0, role="user", content=said)
            )
        waiting = NewRun(
            id=uuid.uuid4(),
            tenant_id=run.tenant_id,
            user_id=run.user_id,
            conversation_id=run.conversation_id,
            agent="triage",
            message=message,
        )
        await RunRepository(session).add_waiting(waiting)
    return waiting


async def test_a_lost_run_passes_its_turn_to_the_run_waiting_behind_it(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    lost = await _run(sessionmaker, status="running", age=timedelta(minutes=5))
    waiting = await _waiting_behind(sessionmaker, lost, "second", said="first")
    sent = SentJobs()

    assert await fail_lost_run(sessionmaker, publisher, lost, sent)

    async with sessionmaker() as session:
        started = await session.get(Run, waiting.id)
        said = await session.scalars(
            select(Message.content)
            .where(Message.conversation_id == waiting.conversation_id)
            .order_by(Message.position)
        )
        assert list(said) == ["first", "second"]
    assert started is not None
    assert (started.status, started.pending_message) == ("queued", None)
    assert started.queued_at is not None
    assert [(job.name, job.args) for job in sent.jobs] == [(EXECUTE, (str(waiting.id),))]


async def test_a_run_waiting_for_its_turn_is_neither_claimed_nor_timed_out(
    sessionmaker: SessionMaker, redis: Redis, publisher: EventPublisher
) -> None:
    busy = await _run(sessionmaker, status="running", age=timedelta(minutes=5))
    await redis.set(lease_key(str(busy)), b"1", ex=30)
    waiting = await _waiting_behind(sessionmaker, busy, "later")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Run)
            .where(Run.id == waiting.id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=5))
        )

    await sweep_runs(sessionmaker, redis, publisher, SETTINGS)
    async with sessionmaker() as session, session.begin():
        claimed = await RunRepository(session).claim(waiting.id, now=datetime.now(UTC), history=5)

    assert claimed is None
    assert await _status(sessionmaker, waiting.id) == ("queued", None)
