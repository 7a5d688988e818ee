"""Conversations as their owner sees them: pages, one with a page of its messages,
deletion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog

from switchboard.auth.principal import Principal
from switchboard.conversations.cursor import (
    decode_conversation_cursor,
    decode_message_cursor,
    encode_conversation_cursor,
    encode_message_cursor,
)
from switchboard.conversations.errors import ConversationNotFoundError
from switchboard.conversations.repository import ConversationRepository
from switchboard.conversations.schemas import (
    ConversationPage,
    ConversationRead,
    ConversationSummary,
    MessagePage,
    MessageRead,
)
from switchboard.kit.pagination import keyset_page
from switchboard.models import Conversation

log = structlog.get_logger("switchboard.conversations")


@dataclass
class ConversationService:
    conversations: ConversationRepository

    async def page(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> ConversationPage:
        after = decode_conversation_cursor(cursor) if cursor else None
        rows = await self.conversations.page(
            principal.tenant_id, principal.subject, limit=limit + 1, after=after
        )
        page = keyset_page(
            rows,
            limit,
            cursor=lambda row: encode_conversation_cursor(row.updated_at, row.id),
            read=ConversationSummary.model_validate,
        )
        return ConversationPage(items=page.items, next_cursor=page.next_cursor)

    async def get(
        self, principal: Principal, conversation_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> ConversationRead:
        conversation = await self._owned(principal, conversation_id)
        page = await self._messages(conversation, limit=limit, cursor=cursor)
        return ConversationRead(
            id=conversation.id,
            title=conversation.title,
            created_at=conversation.created_at,
            updated_at=conversation.updated_at,
            messages=page.items,
            next_cursor=page.next_cursor,
        )

    async def messages(
        self, principal: Principal, conversation_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> MessagePage:
        conversation = await self._owned(principal, conversation_id)
        return await self._messages(conversation, limit=limit, cursor=cursor)

    async def _messages(
        self, conversation: Conversation, *, limit: int, cursor: str | None
    ) -> MessagePage:
        """Oldest first, ``limit`` at most: one more is read only to learn whether a next page
        exists."""
        after = decode_message_cursor(cursor, conversation.id) if cursor else None
        rows = await self.conversations.messages(conversation.id, limit=limit + 1, after=after)
        page = keyset_page(
            rows,
            limit,
            cursor=lambda row: encode_message_cursor(conversation.id, row.position),
            read=MessageRead.model_validate,
        )
        return MessagePage(items=page.items, next_cursor=page.next_cursor)

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
