"""SDK agents built once from the declarative definitions, with their tools and handoffs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agents import Agent, FunctionTool, RunContextWrapper, Tool, handoff

from switchboard.agents.context import AgentContext
from switchboard.agents.definitions import AgentDefinition, ApprovalRule
from switchboard.agents.errors import AgentConfigError, UnknownAgentError
from switchboard.agents.schemas import AgentInfo, ProviderName
from switchboard.agents.tools import ToolRegistry

DEFAULT_AGENT = "triage"

ModelChoice = str | Callable[[AgentDefinition], str]
"""One model name for every agent, or the name each agent's definition gets."""


class AgentRegistry:
    def __init__(
        self,
        definitions: Iterable[AgentDefinition],
        tools: ToolRegistry,
        model: ModelChoice,
        *,
        provider: ProviderName,
        default: str = DEFAULT_AGENT,
    ) -> None:
        """``provider`` is what answers the model names: ``GET /agents`` shows it beside them."""
        self._definitions: dict[str, AgentDefinition] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise AgentConfigError(f"Agent {definition.name!r} is defined twice.")
            self._definitions[definition.name] = definition
        if default not in self._definitions:
            raise AgentConfigError(f"The default agent {default!r} is not defined.")
        self.default = default
        self.provider: ProviderName = provider
        self._tools = tools
        self._models = {
            name: model if isinstance(model, str) else model(definition)
            for name, definition in self._definitions.items()
        }
        self._agents: dict[str, Agent[AgentContext]] = {}
        for name in _build_order(self._definitions):
            self._agents[name] = self._build(self._definitions[name])

    @property
    def names(self) -> list[str]:
        return list(self._definitions)

    def agent(self, name: str) -> Agent[AgentContext]:
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgentError(name) from None

    def describe(self) -> list[AgentInfo]:
        return [
            AgentInfo(
                name=definition.name,
                description=definition.description,
                tools=self._tools.names(definition.tool_bundle),
                handoffs=list(definition.handoffs),
                model=self._models[definition.name],
                provider=self.provider,
            )
            for definition in self._definitions.values()
        ]

    def _build(self, definition: AgentDefinition) -> Agent[AgentContext]:
        return Agent[AgentContext](
            name=definition.name,
            handoff_description=definition.description,
            instructions=definition.instructions,
            tools=self._with_approvals(definition),
            handoffs=[handoff(self._agents[target]) for target in definition.handoffs],
            # A name, resolved by the run's model provider (the offline one answers to any).
            model=self._models[definition.name],
        )

    def _with_approvals(self, definition: AgentDefinition) -> list[Tool]:
        """The agent's tools, those it names in ``needs_approval`` as copies that make the
        Agents SDK stop the run for a person's decision before they run."""
        tools = self._tools.bundle(definition.tool_bundle)
        unknown = set(definition.needs_approval) - {tool.name for tool in tools}
        if unknown:
            raise AgentConfigError(
                f"Agent {definition.name!r} needs approval for tools it does not have:"
                f" {', '.join(sorted(unknown))}."
            )
        return [
            dataclasses.replace(
                tool, needs_approval=_approval(definition.needs_approval[tool.name])
            )
            if isinstance(tool, FunctionTool) and tool.name in definition.needs_approval
            else tool
            for tool in tools
        ]


def _approval(rule: ApprovalRule) -> Any:
    """The SDK's ``needs_approval``: a bool, or its async (context, arguments, call id) form."""
    if isinstance(rule, bool):
        return rule

    async def needs(_: RunContextWrapper[Any], arguments: Mapping[str, Any], __: str) -> bool:
        return bool(rule(arguments))

    return needs


def _build_order(definitions: dict[str, AgentDefinition]) -> list[str]:
    """Handoff targets before the agents that hand off to them.

    ``handoff()`` needs the target agent object, so a cycle could only be built by mutating
    agents afterwards; it is refused instead, as is a target that is not defined.
    """
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise AgentConfigError(f"Agent handoffs form a cycle: {cycle}.")
        state[name] = "visiting"
        for target in definitions[name].handoffs:
            if target not in definitions:
                raise AgentConfigError(f"Agent {name!r} hands off to unknown agent {target!r}.")
            visit(target, (*path, name))
        state[name] = "done"
        order.append(name)

    for name in definitions:
        visit(name, ())
    return order
