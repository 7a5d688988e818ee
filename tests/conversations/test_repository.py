"""The conversation repository on Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.conversations.cursor import decode_conversation_cursor, encode_conversation_cursor
from switchboard.conversations.repository import ConversationRepository, next_position_query
from switchboard.kit.db import SessionMaker
from switchboard.models import Conversation, Message, Tenant, User

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def repository(sessionmaker: SessionMaker) -> AsyncIterator[ConversationRepository]:
    async with sessionmaker() as session:
        yield ConversationRepository(session)


@pytest.fixture
async def owners(sessionmaker: SessionMaker) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Two (tenant, user) pairs."""
    pairs = []
    async with sessionmaker() as session, session.begin():
        for _ in range(2):
            tenant = Tenant(name="t")
            user = User(
                email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1
            )
            session.add_all([tenant, user])
            await session.flush()
            pairs.append((tenant.id, user.id))
    return pairs


async def _conversation(
    repository: ConversationRepository, owner: tuple[uuid.UUID, uuid.UUID], age_minutes: int
) -> Conversation:
    conversation = Conversation(
        id=uuid.uuid4(),
        tenant_id=owner[0],
        user_id=owner[1],
        title="c",
        updated_at=NOW - timedelta(minutes=age_minutes),
    )
    repository.session.add(conversation)
    await repository.session.flush()
    return conversation


async def _say(repository: ConversationRepository, conversation: Conversation, *texts: str) -> None:
    for text in texts:
        repository.session.add(
            Message(
                id=uuid.uuid4(),
                conversation_id=conversation.id,
                position=await _next_position(repository, conversation),
                role="user",
                content=text,
                created_at=datetime.now(UTC),
            )
        )
        await repository.session.flush()


async def _next_position(repository: ConversationRepository, conversation: Conversation) -> int:
    return int(await repository.session.scalar(next_position_query(conversation.id)) or 0)


async def test_pages_are_newest_first_and_never_repeat(
    repository: ConversationRepository, owners: list[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    mine = [await _conversation(repository, owners[0], age) for age in range(5)]
    await _conversation(repository, owners[1], 0)

    first = await repository.page(*owners[0], limit=3, after=None)
    cursor = decode_conversation_cursor(
        encode_conversation_cursor(first[-1].updated_at, first[-1].id)
    )
    second = await repository.page(*owners[0], limit=3, after=cursor)

    assert [c.id for c in first + second] == [c.id for c in mine]


async def test_only_the_owner_gets_a_conversation(
    repository: ConversationRepository, owners: list[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    conversation = await _conversation(repository, owners[0], 0)

    found = await repository.get(*owners[0], conversation.id)
    assert found is not None
    assert found.id == conversation.id
    assert await repository.get(*owners[1], conversation.id) is None
    assert await repository.get(owners[0][0], owners[1][1], conversation.id) is None


async def test_messages_come_in_position_order_one_page_at_a_time(
    repository: ConversationRepository, owners: list[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    conversation = await _conversation(repository, owners[0], 0)
    await _say(repository, conversation, "one", "two", "three")

    first = await repository.messages(conversation.id, limit=2)
    rest = await repository.messages(conversation.id, limit=2, after=first[-1].position)

    assert [m.content for m in first] == ["one", "two"]
    assert [m.content for m in rest] == ["three"]
    assert await repository.messages(conversation.id, limit=2, after=rest[-1].position) == []
    assert await _next_position(repository, conversation) == 3


async def test_search_finds_only_the_callers_words(
    repository: ConversationRepository, owners: list[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    mine = await _conversation(repository, owners[0], 0)
    theirs = await _conversation(repository, owners[1], 0)
    await _say(repository, mine, "the invoice for march", "hello")
    await _say(repository, theirs, "another invoice")

    hits = await repository.search(*owners[0], "invoice please", limit=10)

    assert [(c.id, m.content) for c, m in hits] == [(mine.id, "the invoice for march")]


async def test_delete_removes_the_conversation_and_its_messages(
    repository: ConversationRepository, owners: list[tuple[uuid.UUID, uuid.UUID]]
) -> None:
    conversation = await _conversation(repository, owners[0], 0)
    await _say(repository, conversation, "bye")

    await repository.delete(conversation)

    assert await repository.get(*owners[0], conversation.id) is None
    assert await repository.messages(conversation.id) == []
