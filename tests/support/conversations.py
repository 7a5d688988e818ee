"""Messages written straight into a conversation, as many as a test needs, in one statement."""

from __future__ import annotations

import uuid

from sqlalchemy import Text, cast, func, insert, literal, select

from switchboard.conversations.repository import next_position_query
from switchboard.kit.db import SessionMaker
from switchboard.models import Message


async def add_messages(sessionmaker: SessionMaker, conversation_id: uuid.UUID, count: int) -> None:
    """``count`` user messages "m<position>" after the conversation's last."""
    async with sessionmaker() as session, session.begin():
        start = int(await session.scalar(next_position_query(conversation_id)) or 0)
        positions = (
            func.generate_series(start, start + count - 1).table_valued("n").render_derived()
        )
        await session.execute(
            insert(Message).from_select(
                ["id", "conversation_id", "position", "role", "content"],
                select(
                    func.gen_random_uuid(),
                    literal(conversation_id),
                    positions.c.n,
                    literal("user"),
                    literal("m") + cast(positions.c.n, Text),
                ),
            )
        )


async def count_messages(sessionmaker: SessionMaker, conversation_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(Message.conversation_id == conversation_id)
        return int(await session.scalar(query) or 0)
