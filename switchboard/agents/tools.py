"""Function tools and the bundles that group them for agents.

Tools take the tenant and user from the run context, so a model can never widen what it reads
by choosing arguments.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from agents import FunctionTool, RunContextWrapper, Tool, function_tool

from switchboard.agents.context import AgentContext
from switchboard.agents.errors import AgentConfigError

SEARCH_LIMIT = 5


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    bundles: tuple[str, ...]
    function: Callable[..., Awaitable[str]]


class ToolRegistry:
    """Builds one SDK tool per spec and hands agents the bundles they are allowed."""

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._tools: dict[str, FunctionTool] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise AgentConfigError(f"Tool {spec.name!r} is registered twice.")
            if not spec.bundles:
                raise AgentConfigError(f"Tool {spec.name!r} belongs to no bundle.")
            self._specs[spec.name] = spec
            self._tools[spec.name] = function_tool(
                spec.function, name_override=spec.name, description_override=spec.description
            )

    @property
    def bundles(self) -> frozenset[str]:
        return frozenset(bundle for spec in self._specs.values() for bundle in spec.bundles)

    def specs(self) -> list[ToolSpec]:
        return list(self._specs.values())

    def names(self, bundle: str) -> list[str]:
        if bundle not in self.bundles:
            raise AgentConfigError(f"There is no tool bundle named {bundle!r}.")
        return [name for name, spec in self._specs.items() if bundle in spec.bundles]

    def bundle(self, name: str) -> list[Tool]:
        return [self._tools[tool_name] for tool_name in self.names(name)]


async def current_time() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def search_conversations(
    ctx: RunContextWrapper[AgentContext],
    query: Annotated[str, "Words to look for in the user's earlier conversations."],
) -> str:
    context = ctx.context
    hits = await context.backend.search_conversations(
        tenant_id=context.tenant_id, user_id=context.user_id, query=query, limit=SEARCH_LIMIT
    )
    return json.dumps([asdict(hit) for hit in hits])


async def usage_summary(ctx: RunContextWrapper[AgentContext]) -> str:
    summary = await ctx.context.backend.usage_summary(tenant_id=ctx.context.tenant_id)
    payload: dict[str, Any] = asdict(summary)
    payload["period_start"] = summary.period_start.isoformat()
    payload["period_end"] = summary.period_end.isoformat()
    return json.dumps(payload)


async def cancel_subscription(ctx: RunContextWrapper[AgentContext]) -> str:
    context = ctx.context
    return await context.backend.cancel_subscription(
        tenant_id=context.tenant_id, user_id=context.user_id
    )


TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="current_time",
        description="The current date and time in UTC, as an ISO 8601 timestamp.",
        bundles=("triage", "support", "billing"),
        function=current_time,
    ),
    ToolSpec(
        name="search_conversations",
        description="Search the user's earlier conversations; returns matching titles and "
        "snippets as JSON.",
        bundles=("support",),
        function=search_conversations,
    ),
    ToolSpec(
        name="usage_summary",
        description="Token usage and run count of the user's organisation this month, as JSON.",
        bundles=("billing",),
        function=usage_summary,
    ),
    ToolSpec(
        name="cancel_subscription",
        description="Cancel the organisation's subscription at the end of the current period."
        " Only owners, admins and billing managers may; the user approves the call first.",
        bundles=("billing",),
        function=cancel_subscription,
    ),
)
