"""Conversations as their owner sees them: pages, one with its messages, deletion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog

from switchboard.auth.principal import Principal
from switchboard.conversations.cursor import decode_cursor, encode_cursor
from switchboard.conversations.errors import ConversationNotFoundError, InvalidCursorError
from switchboard.conversations.repository import ConversationRepository
from switchboard.conversations.schemas import (
    ConversationPage,
    ConversationRead,
    ConversationSummary,
    MessageRead,
)
from switchboard.models import Conversation

log = structlog.get_logger("switchboard.conversations")


@dataclass
class ConversationService:
    conversations: ConversationRepository

    async def page(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> ConversationPage:
        try:
            after = decode_cursor(cursor) if cursor else None
        except ValueError:
            raise InvalidCursorError("The cursor is not one this API returned.") from None
        rows = await self.conversations.page(
            principal.tenant_id, principal.subject, limit=limit + 1, after=after
        )
        items, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        return ConversationPage(
            items=[ConversationSummary.model_validate(item) for item in items],
            next_cursor=next_cursor,
        )

    async def get(self, principal: Principal, conversation_id: uuid.UUID) -> ConversationRead:
        conversation = await self._owned(principal, conversation_id)
        messages = await self.conversations.messages(conversation.id)
        return ConversationRead(
            id=conversation.id,
            title=conversation.title,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            messages=[MessageRead.model_validate(message) for message in messages],
        )

    async def delete(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        """With its messages and runs."""
        conversation = await self._owned(principal, conversation_id)
        await self.conversations.delete(conversation)
        log.info("conversations.deleted", conversation_id=str(conversation_id))

    async def _owned(self, principal: Principal, conversation_id: uuid.UUID) -> Conversation:
        conversation = await self.conversations.get(
            principal.tenant_id, principal.subject, conversation_id
        )
        if conversation is None:
            raise ConversationNotFoundError("There is no such conversation.")
        return conversation
