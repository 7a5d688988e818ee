"""What a run carries into its tools: who is asking, and the backend that answers for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ConversationHit:
    conversation_id: str
    title: str
    snippet: str


@dataclass(frozen=True)
class UsageSummary:
    period_start: datetime
    period_end: datetime
    runs: int
    input_tokens: int
    output_tokens: int


class ToolBackend(Protocol):
    """Data the tools read; implemented by the runs domain on Postgres."""

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]: ...

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary: ...

    async def cancel_subscription(self, *, tenant_id: str, user_id: str) -> str:
        """Cancels the tenant's subscription at period end if the user may change billing;
        what happened, in words for the agent."""
        ...


@dataclass
class AgentContext:
    """The SDK run ``context``: tools take identity from here, never from model arguments."""

    tenant_id: str
    user_id: str
    conversation_id: str
    backend: ToolBackend
