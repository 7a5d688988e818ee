"""The agents' tools read the caller's own data through this, on Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from switchboard.agents.context import ConversationHit, UsageSummary
from switchboard.conversations.postgres import PostgresConversationRepository
from switchboard.kit.db import SessionMaker
from switchboard.models import Run

SNIPPET_CHARS = 160


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


class DatabaseToolBackend:
    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        async with self._sessionmaker() as session:
            rows = await PostgresConversationRepository(session).search(
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
        start, end = month_bounds(datetime.now(UTC))
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(
                        func.count(Run.id),
                        func.coalesce(func.sum(Run.input_tokens), 0),
                        func.coalesce(func.sum(Run.output_tokens), 0),
                    ).where(
                        Run.tenant_id == uuid.UUID(tenant_id),
                        Run.created_at >= start,
                        Run.created_at < end,
                    )
                )
            ).one()
        return UsageSummary(
            period_start=start,
            period_end=end,
            runs=int(row[0]),
            input_tokens=int(row[1]),
            output_tokens=int(row[2]),
        )
