"""A conversation holds at most CONVERSATIONS_MAX_MESSAGES messages: a chat into a full one is
409 conversation.full, with nothing stored and no run queued."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from api.main import create_app
from switchboard.conversations.settings import ConversationSettings
from switchboard.kit.db import SessionMaker
from switchboard.models import Conversation, Run
from switchboard.settings import Settings
from tests.support.app import in_test_transaction
from tests.support.conversations import add_messages, count_messages
from tests.support.members import NewMember
from tests.support.plans import put_on_plan

CAP = ConversationSettings().max_messages


async def _runs(sessionmaker: SessionMaker, conversation_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(Run.conversation_id == conversation_id)
        return int(await session.scalar(query) or 0)


async def _updated_at(sessionmaker: SessionMaker, conversation_id: uuid.UUID) -> datetime:
    async with sessionmaker() as session:
        query = select(Conversation.updated_at).where(Conversation.id == conversation_id)
        return (await session.scalars(query)).one()


@pytest.mark.parametrize("path", ["/api/v1/chat", "/api/v1/chat/stream"])
async def test_a_chat_into_a_full_conversation_is_refused_and_stores_nothing(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, path: str
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id)  # no limits: the runs stay queued
    started = await client.post("/api/v1/chat", json={"message": "m0"}, headers=alice.headers)
    conversation_id = uuid.UUID(started.json()["conversation_id"])
    await add_messages(sessionmaker, conversation_id, CAP - 2)
    chat = {"message": "one more", "conversation_id": str(conversation_id)}

    last_one = await client.post("/api/v1/chat", json=chat, headers=alice.headers)
    touched = await _updated_at(sessionmaker, conversation_id)
    refused = await client.post(path, json=chat, headers=alice.headers)

    assert last_one.status_code == 202
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "conversation.full"
    # The last one waits for the first run's turn (no worker here): its message joins the
    # conversation then, and counts against the cap meanwhile.
    assert await count_messages(sessionmaker, conversation_id) == CAP - 1
    assert await _runs(sessionmaker, conversation_id) == 2
    assert await _updated_at(sessionmaker, conversation_id) == touched


async def test_the_cap_is_the_setting_the_api_runs_with(
    settings: Settings, sessionmaker: SessionMaker, new_member: NewMember
) -> None:
    small = settings.model_copy(update={"conversations": ConversationSettings(max_messages=3)})
    async with in_test_transaction(create_app(small), sessionmaker) as client:
        alice = await new_member()
        await put_on_plan(sessionmaker, alice.tenant_id)
        first = await client.post("/api/v1/chat", json={"message": "m0"}, headers=alice.headers)
        chat = {"message": "again", "conversation_id": first.json()["conversation_id"]}
        await add_messages(sessionmaker, uuid.UUID(chat["conversation_id"]), 1)

        second = await client.post("/api/v1/chat", json=chat, headers=alice.headers)
        third = await client.post("/api/v1/chat", json=chat, headers=alice.headers)

    assert second.status_code == 202
    assert third.status_code == 409
    assert third.json()["code"] == "conversation.full"
