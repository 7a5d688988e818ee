"""The run statements on Postgres: starting a run, in a new or an existing conversation,
claiming it with its history, and finishing it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from switchboard.kit.db import SessionMaker
from switchboard.models import Conversation, Message, Run, Tenant, UsageRecord, User
from switchboard.runs.repository import ClaimedRun, NewRun, Reply, RunRepository
from switchboard.runs.schemas import Usage

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def owner(sessionmaker: SessionMaker) -> tuple[uuid.UUID, uuid.UUID]:
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name="t")
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add_all([tenant, user])
        await session.flush()
        return tenant.id, user.id


def _new_run(
    owner: tuple[uuid.UUID, uuid.UUID], conversation_id: uuid.UUID, message: str
) -> NewRun:
    return NewRun(
        id=uuid.uuid4(),
        tenant_id=owner[0],
        user_id=owner[1],
        conversation_id=conversation_id,
        agent="billing",
        message=message,
    )


async def _start_new(sessionmaker: SessionMaker, run: NewRun, title: str) -> None:
    async with sessionmaker() as session, session.begin():
        await RunRepository(session).start_in_new_conversation(run, title=title, now=NOW)


NOTHING = Usage(input_tokens=0, output_tokens=0)


async def _messages(sessionmaker: SessionMaker, conversation_id: uuid.UUID) -> list[Message]:
    async with sessionmaker() as session:
        query = select(Message).where(Message.conversation_id == conversation_id)
        return list((await session.scalars(query.order_by(Message.position))).all())


async def test_a_run_in_a_new_conversation_writes_all_three_rows(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new = _new_run(owner, uuid.uuid4(), "hello there")
    await _start_new(sessionmaker, new, "hello")

    async with sessionmaker() as session:
        conversation = await session.get(Conversation, new.conversation_id)
        run = await session.get(Run, new.id)
    assert conversation is not None
    assert run is not None
    assert (conversation.tenant_id, conversation.user_id) == owner
    assert (conversation.title, conversation.updated_at) == ("hello", NOW)
    assert (run.status, run.entry_agent, run.attempt, run.conversation_id) == (
        "queued",
        "billing",
        0,
        new.conversation_id,
    )
    assert (run.input_tokens, run.output_tokens, run.started_at) == (0, 0, None)
    [message] = await _messages(sessionmaker, new.conversation_id)
    assert (message.position, message.role, message.content, message.run_id) == (
        0,
        "user",
        "hello there",
        new.id,
    )


async def test_a_run_in_a_conversation_takes_the_next_position_and_touches_it(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    first = _new_run(owner, uuid.uuid4(), "one")
    await _start_new(sessionmaker, first, "one")
    later = datetime(2026, 11, 2, tzinfo=UTC)
    second = _new_run(owner, first.conversation_id, "two")
    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).start_in_conversation(second, now=later)

    messages = await _messages(sessionmaker, first.conversation_id)
    assert [(m.position, m.content, m.run_id) for m in messages] == [
        (0, "one", first.id),
        (1, "two", second.id),
    ]
    async with sessionmaker() as session:
        conversation = await session.get(Conversation, first.conversation_id)
    assert conversation is not None
    assert conversation.updated_at == later


async def test_another_users_conversation_is_refused_and_nothing_is_written(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    mine = _new_run(owner, uuid.uuid4(), "mine")
    await _start_new(sessionmaker, mine, "mine")
    stranger = (owner[0], uuid.uuid4())  # same tenant, another user
    other_tenant = (uuid.uuid4(), owner[1])

    for intruder in (stranger, other_tenant):
        attempt = _new_run(intruder, mine.conversation_id, "let me in")
        async with sessionmaker() as session, session.begin():
            assert not await RunRepository(session).start_in_conversation(attempt, now=NOW)
        async with sessionmaker() as session:
            assert await session.get(Run, attempt.id) is None
    unknown = _new_run(owner, uuid.uuid4(), "nobody's")
    async with sessionmaker() as session, session.begin():
        assert not await RunRepository(session).start_in_conversation(unknown, now=NOW)
    assert [m.content for m in await _messages(sessionmaker, mine.conversation_id)] == ["mine"]


async def test_a_chat_waiting_for_the_conversations_lock_counts_the_message_it_waited_for(
    committed: SessionMaker,
) -> None:
    # The conversation cap rests on this count: read with the lock in one statement, it would
    # come from before the first chat's message committed, and both chats would see room.
    async with committed() as session, session.begin():
        tenant = Tenant(name="t")
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add_all([tenant, user])
        await session.flush()
        owner = (tenant.id, user.id)
    first = _new_run(owner, uuid.uuid4(), "m0")
    await _start_new(committed, first, "c")
    second = _new_run(owner, first.conversation_id, "m1")
    third = _new_run(owner, first.conversation_id, "m2")

    async with committed() as waiter, waiter.begin():
        waiter_pid = await waiter.scalar(text("SELECT pg_backend_pid()"))
        async with committed() as holder, holder.begin():
            held = await RunRepository(holder).lock_conversation(second, now=NOW)
            assert held is not None
            waiting = asyncio.create_task(RunRepository(waiter).lock_conversation(third, now=NOW))
            await _until_waiting_for_a_lock(committed, waiter_pid)
            await RunRepository(holder).add_to_conversation(second, position=held)
        counted = await waiting

    assert (held, counted) == (1, 2)


async def _until_waiting_for_a_lock(sessionmaker: SessionMaker, pid: int) -> None:
    query = text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid")
    while True:
        async with sessionmaker() as session:
            if await session.scalar(query, {"pid": pid}):
                return
        await asyncio.sleep(0.01)


async def test_the_claim_runs_once_and_brings_the_latest_history_oldest_first(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    runs = [_new_run(owner, uuid.uuid4(), "m0")]
    await _start_new(sessionmaker, runs[0], "c")
    async with sessionmaker() as session, session.begin():
        for n in range(1, 4):
            runs.append(_new_run(owner, runs[0].conversation_id, f"m{n}"))
            assert await RunRepository(session).start_in_conversation(runs[-1], now=NOW)

    async with sessionmaker() as session, session.begin():
        claimed = await RunRepository(session).claim(runs[3].id, now=NOW, history=3)
    assert claimed is not None
    assert (claimed.id, claimed.entry_agent, claimed.conversation_id) == (
        runs[3].id,
        "billing",
        runs[0].conversation_id,
    )
    assert (claimed.tenant_id, claimed.user_id) == owner
    assert claimed.history == [("user", "m1"), ("user", "m2"), ("user", "m3")]
    async with sessionmaker() as session:
        run = await session.get(Run, runs[3].id)
    assert run is not None
    assert (run.status, run.attempt, run.started_at) == ("running", 1, NOW)

    async with sessionmaker() as session, session.begin():
        repository = RunRepository(session)
        assert await repository.claim(runs[3].id, now=NOW, history=3) is None  # taken
        assert await repository.claim(uuid.uuid4(), now=NOW, history=3) is None  # unknown
        no_history = await repository.claim(runs[0].id, now=NOW, history=0)
    assert no_history is not None
    assert no_history.history == []


async def _claimed(sessionmaker: SessionMaker, run: NewRun) -> ClaimedRun:
    async with sessionmaker() as session, session.begin():
        claimed = await RunRepository(session).claim(run.id, now=NOW, history=10)
    assert claimed is not None
    return claimed


async def _running(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID], message: str
) -> tuple[NewRun, ClaimedRun]:
    """A run claimed in a new conversation of its own."""
    new = _new_run(owner, uuid.uuid4(), message)
    await _start_new(sessionmaker, new, message)
    return new, await _claimed(sessionmaker, new)


async def _usage_records(sessionmaker: SessionMaker, run_id: uuid.UUID) -> list[UsageRecord]:
    async with sessionmaker() as session:
        query = select(UsageRecord).where(UsageRecord.run_id == run_id)
        return list((await session.scalars(query)).all())


async def test_a_succeeded_run_stores_its_replies_usage_and_usage_record_together(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new, claimed = await _running(sessionmaker, owner, "question")
    replies = [
        Reply(uuid.uuid4(), "handing over", "triage"),
        Reply(uuid.uuid4(), "done", "billing"),
    ]
    finished_at = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)

    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).finish_succeeded(
            claimed,
            agent="billing",
            usage=Usage(input_tokens=11, output_tokens=7, cached_input_tokens=4),
            replies=replies,
            now=finished_at,
        )

    async with sessionmaker() as session:
        run = await session.get(Run, new.id)
    assert run is not None
    assert (run.status, run.final_agent, run.input_tokens, run.output_tokens) == (
        "succeeded",
        "billing",
        11,
        7,
    )
    assert run.cached_input_tokens == 4
    assert run.finished_at == finished_at
    messages = await _messages(sessionmaker, new.conversation_id)
    assert [
        (m.id, m.position, m.role, m.content, m.agent, m.run_id, m.output_tokens)
        for m in messages[1:]
    ] == [
        (replies[0].message_id, 1, "assistant", "handing over", "triage", new.id, 7),
        (replies[1].message_id, 2, "assistant", "done", "billing", new.id, None),
    ]
    [record] = await _usage_records(sessionmaker, new.id)
    assert (record.tenant_id, record.input_tokens, record.output_tokens) == (owner[0], 11, 7)
    assert record.cached_input_tokens == 4
    assert (record.period_start, record.report_state, record.report_attempts) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        "pending",
        0,
    )


async def test_a_run_that_wrote_no_reply_still_succeeds_and_is_metered(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new, claimed = await _running(sessionmaker, owner, "quiet")

    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).finish_succeeded(
            claimed,
            agent="triage",
            usage=Usage(input_tokens=3, output_tokens=0),
            replies=[],
            now=NOW,
        )

    assert [m.role for m in await _messages(sessionmaker, new.conversation_id)] == ["user"]
    [record] = await _usage_records(sessionmaker, new.id)
    assert (record.input_tokens, record.output_tokens, record.cached_input_tokens) == (3, 0, 0)


async def test_a_cancelled_run_keeps_what_it_said_and_is_metered_for_it(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new, claimed = await _running(sessionmaker, owner, "question")
    replies = [
        Reply(uuid.uuid4(), "handing over", "triage"),
        Reply(uuid.uuid4(), "you were bil", "billing", incomplete=True),
    ]

    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).finish_cancelled(
            claimed,
            agent="billing",
            usage=Usage(input_tokens=20, output_tokens=6, cached_input_tokens=5),
            replies=replies,
            now=NOW,
        )

    async with sessionmaker() as session:
        run = await session.get(Run, new.id)
    assert run is not None
    assert (run.status, run.final_agent, run.input_tokens, run.output_tokens) == (
        "cancelled",
        "billing",
        20,
        6,
    )
    messages = await _messages(sessionmaker, new.conversation_id)
    assert [(m.position, m.content, m.agent, m.incomplete) for m in messages] == [
        (0, "question", None, False),
        (1, "handing over", "triage", False),
        (2, "you were bil", "billing", True),
    ]
    [record] = await _usage_records(sessionmaker, new.id)
    assert (record.input_tokens, record.output_tokens, record.cached_input_tokens) == (20, 6, 5)


async def test_a_run_cancelled_before_it_said_or_used_anything_stores_nothing_more(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new, claimed = await _running(sessionmaker, owner, "question")

    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).finish_cancelled(
            claimed, agent="triage", usage=NOTHING, replies=[], now=NOW
        )

    assert [m.content for m in await _messages(sessionmaker, new.conversation_id)] == ["question"]
    assert await _usage_records(sessionmaker, new.id) == []


async def test_a_run_that_ended_or_lost_its_conversation_is_not_finished_again(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    ended, claimed_ended = await _running(sessionmaker, owner, "ended")
    deleted, claimed_deleted = await _running(sessionmaker, owner, "deleted")
    claimed = {ended.id: claimed_ended, deleted.id: claimed_deleted}
    async with sessionmaker() as session, session.begin():
        repository = RunRepository(session)
        assert await repository.finish_cancelled(
            claimed_ended, agent="triage", usage=NOTHING, replies=[], now=NOW
        )
        await session.delete(await session.get(Conversation, deleted.conversation_id))

    for new in (ended, deleted):
        async with sessionmaker() as session, session.begin():
            repository = RunRepository(session)
            assert not await repository.finish_succeeded(
                claimed[new.id],
                agent="triage",
                usage=Usage(input_tokens=1, output_tokens=1),
                replies=[Reply(uuid.uuid4(), "late", "triage")],
                now=NOW,
            )
            assert not await repository.finish_failed(new.id, code="x", message="y", now=NOW)
            assert not await repository.finish_cancelled(
                claimed[new.id], agent="triage", usage=NOTHING, replies=[], now=NOW
            )
        assert await _usage_records(sessionmaker, new.id) == []
    assert [m.content for m in await _messages(sessionmaker, ended.conversation_id)] == ["ended"]
    async with sessionmaker() as session:
        run = await session.get(Run, ended.id)
    assert run is not None
    assert (run.status, run.final_agent, run.error_code) == ("cancelled", "triage", None)


async def test_a_failed_run_keeps_its_error(
    sessionmaker: SessionMaker, owner: tuple[uuid.UUID, uuid.UUID]
) -> None:
    new, _ = await _running(sessionmaker, owner, "fail")
    async with sessionmaker() as session, session.begin():
        assert await RunRepository(session).finish_failed(
            new.id, code="agent_error", message="boom", now=NOW
        )
    async with sessionmaker() as session:
        run = await session.get(Run, new.id)
    assert run is not None
    assert (run.status, run.error_code, run.error_message, run.finished_at) == (
        "failed",
        "agent_error",
        "boom",
        NOW,
    )
    assert run.final_agent is None
    assert await _usage_records(sessionmaker, new.id) == []
