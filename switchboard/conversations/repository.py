"""Conversations and their messages in Postgres; a conversation is found only through its
owner's tenant and user."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.conversations.schemas import MESSAGE_PAGE_DEFAULT
from switchboard.models import Conversation, Message


def next_position_query(conversation_id: uuid.UUID | ColumnElement[Any]) -> Select[int]:
    """The position a new message of the conversation takes; read it under the conversation's
    lock, or two writers may take the same one."""
    return select(func.coalesce(func.max(Message.position) + 1, 0)).where(
        Message.conversation_id == conversation_id
    )


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        conversation_id: uuid.UUID,
    ) -> Conversation | None:
        query = select(Conversation).where(
            Conversation.id == conversation_id,
            Conversation.tenant_id == tenant_id,
            Conversation.user_id == user_id,
        )
        return (await self.session.scalars(query)).one_or_none()

    async def page(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Conversation]:
        query = (
            select(Conversation)
            .where(Conversation.tenant_id == tenant_id, Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                tuple_(Conversation.updated_at, Conversation.id) < tuple_(after[0], after[1])
            )
        return list((await self.session.scalars(query)).all())

    async def messages(
        self,
        conversation_id: uuid.UUID,
        *,
        limit: int = MESSAGE_PAGE_DEFAULT,
        after: int | None = None,
    ) -> list[Message]:
        """Up to ``limit`` messages in position order, those after position ``after``."""
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.position)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Message.position > after)
        return list((await self.session.scalars(query)).all())

    async def delete(self, conversation: Conversation) -> None:
        await self.session.execute(delete(Conversation).where(Conversation.id == conversation.id))

    async def search(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, query: str, *, limit: int
    ) -> list[tuple[Conversation, Message]]:
        words = [word for word in query.split() if len(word) > 2][:8] or [query]
        pattern = [Message.content.ilike(f"%{_escape(word)}%", escape="\\") for word in words]
        rows = await self.session.execute(
            select(Conversation, Message)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(
                Conversation.tenant_id == tenant_id,
                Conversation.user_id == user_id,
                or_(*pattern),
            )
            .order_by(Message.created_at.desc())
            .limit(limit)
        )
        return [(row[0], row[1]) for row in rows]


def _escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
