"""The agents' tools read the caller's own data through this, on Postgres."""

from __future__ import annotations

import uuid

from switchboard.agents.context import ConversationHit, UsageSummary
from switchboard.billing.service import BillingService
from switchboard.conversations.repository import ConversationRepository
from switchboard.kit.db import SessionMaker

SNIPPET_CHARS = 160


class DatabaseToolBackend:
    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        async with self._sessionmaker() as session:
            rows = await ConversationRepository(session).search(
                uuid.UUID(tenant_id), uuid.UUID(user_id), query, limit=limit
            )
        return [
            ConversationHit(
                conversation_id=str(conversation.id),
                title=conversation.title,
                snippet=message.content[:SNIPPET_CHARS],
            )
            for conversation, message in rows
        ]

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary:
        """This month's usage as billing counts it: the same answer as the usage endpoint."""
        async with self._sessionmaker() as session:
            usage = await BillingService(session).usage(uuid.UUID(tenant_id))
        return UsageSummary(
            period_start=usage.period_start,
            period_end=usage.period_end,
            runs=usage.runs,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
