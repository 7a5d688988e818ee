"""Agents under the real SDK Runner on the offline model, with an in-memory tool backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.stream_events import StreamEvent

from switchboard.agents.context import AgentContext, ConversationHit, UsageSummary
from switchboard.agents.definitions import DEFINITIONS
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.providers import run_config as make_run_config
from switchboard.agents.registry import AgentRegistry
from switchboard.agents.settings import OpenAISettings
from switchboard.agents.tools import TOOL_SPECS, ToolRegistry

TENANT = "tenant-1"
USER = "user-1"

USAGE = UsageSummary(
    period_start=datetime(2025, 3, 1, tzinfo=UTC),
    period_end=datetime(2025, 4, 1, tzinfo=UTC),
    runs=7,
    input_tokens=1200,
    output_tokens=340,
)


@dataclass
class InMemoryBackend:
    hits: list[ConversationHit] = field(
        default_factory=lambda: [ConversationHit("conv-9", "Invoices", "march invoice")]
    )
    searches: list[dict[str, Any]] = field(default_factory=list)
    usage_requests: list[str] = field(default_factory=list)

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        self.searches.append(
            {"tenant_id": tenant_id, "user_id": user_id, "query": query, "limit": limit}
        )
        return self.hits

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary:
        self.usage_requests.append(tenant_id)
        return USAGE

    async def cancel_subscription(self, *, tenant_id: str, user_id: str) -> str:
        return "Cancelled: the subscription ends at the end of the period."


@dataclass
class Outcome:
    events: list[StreamEvent]
    final_output: Any
    last_agent: str
    input_tokens: int
    output_tokens: int
    requests: int


@pytest.fixture
def backend() -> InMemoryBackend:
    return InMemoryBackend()


@pytest.fixture
def context(backend: InMemoryBackend) -> AgentContext:
    return AgentContext(tenant_id=TENANT, user_id=USER, conversation_id="conv-1", backend=backend)


@pytest.fixture
def registry() -> AgentRegistry:
    # Real providers' model names: the offline provider answers whatever is asked for.
    return AgentRegistry(
        DEFINITIONS, ToolRegistry(TOOL_SPECS), OpenAISettings().model_for, provider="offline"
    )


def offline_run_config(token_delay_ms: float = 0) -> RunConfig:
    provider = OfflineModelProvider(token_delay_ms=token_delay_ms)
    return make_run_config(provider, OpenAISettings())


@pytest.fixture
def run(registry: AgentRegistry, context: AgentContext) -> Any:
    async def run(agent: str, message: str, *, token_delay_ms: float = 0) -> Outcome:
        result = Runner.run_streamed(
            registry.agent(agent),
            message,
            context=context,
            run_config=offline_run_config(token_delay_ms),
        )
        events = [event async for event in result.stream_events()]
        usage = result.context_wrapper.usage
        return Outcome(
            events=events,
            final_output=result.final_output,
            last_agent=result.last_agent.name,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            requests=usage.requests,
        )

    return run
