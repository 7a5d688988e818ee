"""An in-memory conversation repository for unit tests: the contract of the Postgres one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from switchboard.models import Conversation, Message


@dataclass
class InMemoryConversationRepository:
    conversations: dict[uuid.UUID, Conversation] = field(default_factory=dict)
    stored: dict[uuid.UUID, list[Message]] = field(default_factory=dict)

    async def add_conversation(self, conversation: Conversation) -> None:
        conversation.id = conversation.id or uuid.uuid4()
        conversation.created_at = conversation.created_at or datetime.now(UTC)
        conversation.updated_at = conversation.updated_at or conversation.created_at
        self.conversations[conversation.id] = conversation
        self.stored.setdefault(conversation.id, [])

    async def add_message(self, message: Message) -> None:
        message.id = message.id or uuid.uuid4()
        message.created_at = message.created_at or datetime.now(UTC)
        existing = self.stored.setdefault(message.conversation_id, [])
        if any(other.position == message.position for other in existing):
            raise ValueError("duplicate message position")  # the unique constraint
        existing.append(message)

    async def get(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        conversation_id: uuid.UUID,
    ) -> Conversation | None:
        found = self.conversations.get(conversation_id)
        if found is None or (found.tenant_id, found.user_id) != (tenant_id, user_id):
            return None
        return found

    async def page(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Conversation]:
        own = [
            c
            for c in self.conversations.values()
            if (c.tenant_id, c.user_id) == (tenant_id, user_id)
            and (after is None or (c.updated_at, c.id) < after)
        ]
        own.sort(key=lambda c: (c.updated_at, c.id), reverse=True)
        return own[:limit]

    async def messages(
        self, conversation_id: uuid.UUID, *, last: int | None = None
    ) -> list[Message]:
        ordered = sorted(self.stored.get(conversation_id, []), key=lambda m: m.position)
        return ordered if last is None else ordered[-last:] if last else []

    async def next_position(self, conversation_id: uuid.UUID) -> int:
        return max((m.position for m in self.stored.get(conversation_id, [])), default=-1) + 1

    async def delete(self, conversation: Conversation) -> None:
        self.conversations.pop(conversation.id, None)
        self.stored.pop(conversation.id, None)

    async def search(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, query: str, *, limit: int
    ) -> list[tuple[Conversation, Message]]:
        words = [word.lower() for word in query.split() if len(word) > 2][:8] or [query.lower()]
        hits = [
            (conversation, message)
            for conversation in self.conversations.values()
            if (conversation.tenant_id, conversation.user_id) == (tenant_id, user_id)
            for message in self.stored.get(conversation.id, [])
            if any(word in message.content.lower() for word in words)
        ]
        hits.sort(key=lambda hit: hit[1].created_at, reverse=True)
        return hits[:limit]
