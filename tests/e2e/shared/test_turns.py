"""Double-texting: chats into a conversation whose run is still going, through two real API
processes and a real runs worker, each multitask_strategy end to end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select

from switchboard.kit.db import SessionMaker
from switchboard.models import Run, UsageRecord
from switchboard.runs.turns import MultitaskStrategy
from tests.e2e.conftest import chat
from tests.support.sse import Frame, collect, frames

# Each word of a reply waits TOKEN_DELAY_MS (30 ms, tests/e2e/shared/conftest.py): a run of
# LONG stays in flight for about 1.2 s.
LONG = " ".join(f"long{index}" for index in range(40))


async def stream_of(api: AsyncClient, headers: dict[str, str], run_id: str) -> list[Frame]:
    async with api.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        return await collect(response)


async def messages(api: AsyncClient, headers: dict[str, str], conversation: str) -> list[Any]:
    read = await api.get(f"/api/v1/conversations/{conversation}", headers=headers)
    return [(m["role"], m["content"], m["incomplete"]) for m in read.json()["messages"]]


def words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


async def started_conversation(api: AsyncClient, headers: dict[str, str]) -> str:
    first = await chat(api, headers, "hello there")
    await stream_of(api, headers, first["run_id"])
    return str(first["conversation_id"])


async def stopped_mid_stream(
    apis: tuple[AsyncClient, AsyncClient],
    user: dict[str, str],
    message: str,
    strategy: MultitaskStrategy,
) -> tuple[str, list[Frame], dict[str, Any], list[Frame]]:
    """A long run in a conversation and, once its first delta arrives, ``message`` sent with
    ``strategy`` through the other API process: the conversation, the long run's frames, the
    long run, and the new run's frames."""
    conversation = await started_conversation(apis[0], user)
    long_run = await chat(apis[0], user, LONG, conversation_id=conversation)
    seen: list[Frame] = []
    new: dict[str, Any] = {}
    url = f"/api/v1/runs/{long_run['run_id']}/stream"
    async with apis[0].stream("GET", url, headers=user) as response:
        async for frame in frames(response):
            seen.append(frame)
            if frame.event == "message.delta" and not new:
                new = await chat(
                    apis[1],
                    user,
                    message,
                    conversation_id=conversation,
                    multitask_strategy=strategy.value,
                )
    return conversation, seen, long_run, await stream_of(apis[1], user, new["run_id"])


async def test_two_chats_at_once_from_two_processes_run_in_turn(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    conversation = await started_conversation(apis[0], user)

    first, second = await asyncio.gather(
        chat(apis[0], user, "alpha one two", conversation_id=conversation),
        chat(apis[1], user, "beta three four five", conversation_id=conversation),
    )
    streams = await asyncio.gather(
        stream_of(apis[0], user, first["run_id"]), stream_of(apis[1], user, second["run_id"])
    )

    assert [received[-1].event for received in streams] == ["run.completed", "run.completed"]
    async with committed() as session:
        runs = {
            str(run.id): run
            for run in [
                await session.get(Run, uuid.UUID(first["run_id"])),
                await session.get(Run, uuid.UUID(second["run_id"])),
            ]
            if run is not None
        }
    earlier, later = sorted(runs.values(), key=lambda run: run.started_at or run.created_at)
    assert earlier.finished_at is not None
    assert later.started_at is not None
    assert later.started_at >= earlier.finished_at  # one at a time
    # Whichever process won the lock went first; the other's message follows its reply.
    said = {first["run_id"]: "alpha one two", second["run_id"]: "beta three four five"}
    one, two = said[str(earlier.id)], said[str(later.id)]
    assert await messages(apis[0], user, conversation) == [
        ("user", "hello there", False),
        ("assistant", "hello there", False),
        ("user", one, False),
        ("assistant", one, False),
        ("user", two, False),
        ("assistant", two, False),
    ]
    # Each run read the conversation as it stood when it started (the offline model counts
    # the words of every message it reads).
    assert earlier.input_tokens == words("hello there", "hello there", one)
    assert later.input_tokens == words("hello there", "hello there", one, one, two)


async def test_interrupt_stops_the_run_keeping_what_it_said(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str]
) -> None:
    conversation, seen, _, after = await stopped_mid_stream(
        apis, user, "stop that", MultitaskStrategy.interrupt
    )

    assert [frame.event for frame in seen[-2:]] == ["message.completed", "run.cancelled"]
    partial = "".join(frame.data["delta"] for frame in seen if frame.event == "message.delta")
    assert seen[-2].data == {**seen[-2].data, "content": partial, "incomplete": True}
    assert 0 < len(partial.split()) < words(LONG)
    assert after[-1].event == "run.completed"
    assert await messages(apis[0], user, conversation) == [
        ("user", "hello there", False),
        ("assistant", "hello there", False),
        ("user", LONG, False),
        ("assistant", partial, True),
        ("user", "stop that", False),
        ("assistant", "stop that", False),
    ]
    # The new run read the partial reply.
    usage = after[-1].data["usage"]
    assert usage["input_tokens"] == words("hello there", "hello there", LONG, partial, "stop that")


async def test_rollback_removes_the_run_and_its_message(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    conversation, seen, long_run, after = await stopped_mid_stream(
        apis, user, "instead this", MultitaskStrategy.rollback
    )
    replacing = after[0].data

    assert seen[-1].event == "run.cancelled"
    assert "message.completed" not in [frame.event for frame in seen]
    assert after[-1].event == "run.completed"
    assert await messages(apis[0], user, conversation) == [
        ("user", "hello there", False),
        ("assistant", "hello there", False),
        ("user", "instead this", False),
        ("assistant", "instead this", False),
    ]
    gone = await apis[0].get(f"/api/v1/runs/{long_run['run_id']}", headers=user)
    assert gone.status_code == 404
    usage = after[-1].data["usage"]
    assert usage["input_tokens"] == words("hello there", "hello there", "instead this")
    # What the stopped run used is billed once; its record outlives it.
    async with committed() as session:
        billed = await session.scalars(
            select(UsageRecord.run_id).where(
                UsageRecord.run_id.in_(
                    [uuid.UUID(long_run["run_id"]), uuid.UUID(replacing["run_id"])]
                )
            )
        )
        assert sorted(map(str, billed)) == sorted([long_run["run_id"], replacing["run_id"]])


async def test_reject_refuses_while_a_run_is_going_and_stores_nothing(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str]
) -> None:
    conversation = await started_conversation(apis[0], user)
    long_run = await chat(apis[0], user, LONG, conversation_id=conversation)

    refused = await apis[1].post(
        "/api/v1/chat",
        json={"message": "me too", "conversation_id": conversation, "multitask_strategy": "reject"},
        headers=user,
    )
    finished = await stream_of(apis[0], user, long_run["run_id"])
    idle = await chat(
        apis[1], user, "now then", conversation_id=conversation, multitask_strategy="reject"
    )
    await stream_of(apis[1], user, idle["run_id"])

    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "runs.conversation_busy"
    assert finished[-1].event == "run.completed"
    assert [content for _, content, _ in await messages(apis[0], user, conversation)] == [
        "hello there",
        "hello there",
        LONG,
        LONG,
        "now then",
        "now then",
    ]


async def test_an_unknown_strategy_is_refused(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str]
) -> None:
    refused = await apis[0].post(
        "/api/v1/chat", json={"message": "hi", "multitask_strategy": "later"}, headers=user
    )
    assert refused.status_code == 422
    assert [error["loc"] for error in refused.json()["errors"]] == [["body", "multitask_strategy"]]
