"""Agents built from the definitions: bundles, handoffs, the API description, and bad configs."""

from __future__ import annotations

import pytest
from agents import Handoff

from switchboard.agents.definitions import DEFINITIONS, AgentDefinition
from switchboard.agents.errors import AgentConfigError, UnknownAgentError
from switchboard.agents.registry import AgentRegistry
from switchboard.agents.schemas import AgentInfo
from switchboard.agents.tools import TOOL_SPECS, ToolRegistry
from switchboard.kit.errors import AppError

TOOLS = ToolRegistry(TOOL_SPECS)


def handoff_targets(registry: AgentRegistry, name: str) -> list[str]:
    targets = []
    for option in registry.agent(name).handoffs:
        assert isinstance(option, Handoff)
        targets.append(option.agent_name)
    return targets


def tool_names(registry: AgentRegistry, name: str) -> list[str]:
    return [tool.name for tool in registry.agent(name).tools]


def test_triage_hands_off_to_billing_and_support(registry: AgentRegistry) -> None:
    assert registry.default == "triage"
    assert handoff_targets(registry, "triage") == ["billing", "support"]
    assert [h.tool_name for h in registry.agent("triage").handoffs if isinstance(h, Handoff)] == [
        "transfer_to_billing",
        "transfer_to_support",
    ]
    assert handoff_targets(registry, "billing") == []
    assert handoff_targets(registry, "support") == []


def test_each_agent_gets_only_its_bundle(registry: AgentRegistry) -> None:
    assert tool_names(registry, "triage") == ["current_time"]
    assert tool_names(registry, "billing") == [
        "current_time",
        "usage_summary",
        "cancel_subscription",
    ]
    assert tool_names(registry, "support") == ["current_time", "search_conversations"]


def test_describe_lists_every_agent_for_the_api(registry: AgentRegistry) -> None:
    described = registry.describe()

    assert described == [
        AgentInfo(
            name="triage",
            description=DEFINITIONS[0].description,
            tools=["current_time"],
            handoffs=["billing", "support"],
            model="gpt-4.1-mini",
            provider="offline",
        ),
        AgentInfo(
            name="billing",
            description=DEFINITIONS[1].description,
            tools=["current_time", "usage_summary", "cancel_subscription"],
            handoffs=[],
            model="gpt-4.1",
            provider="offline",
        ),
        AgentInfo(
            name="support",
            description=DEFINITIONS[2].description,
            tools=["current_time", "search_conversations"],
            handoffs=[],
            model="gpt-4.1",
            provider="offline",
        ),
    ]
    assert set(described[0].model_dump()) == {
        "name",
        "description",
        "tools",
        "handoffs",
        "model",
        "provider",
    }
    assert registry.names == ["triage", "billing", "support"]


def test_unknown_agent_is_a_422_problem(registry: AgentRegistry) -> None:
    with pytest.raises(UnknownAgentError) as raised:
        registry.agent("sales")

    assert isinstance(raised.value, AppError)
    assert raised.value.status == 422
    assert raised.value.code == "agent.unknown"
    assert "sales" in raised.value.message


def test_one_model_name_serves_every_agent() -> None:
    registry = AgentRegistry(DEFINITIONS, TOOLS, "gpt-x", provider="openai")

    assert [registry.agent(name).model for name in registry.names] == ["gpt-x"] * 3
    assert {(info.model, info.provider) for info in registry.describe()} == {("gpt-x", "openai")}


def test_each_agent_gets_the_model_chosen_for_its_definition() -> None:
    registry = AgentRegistry(
        DEFINITIONS, TOOLS, lambda definition: f"{definition.name}-model", provider="offline"
    )

    assert {name: registry.agent(name).model for name in registry.names} == {
        "triage": "triage-model",
        "billing": "billing-model",
        "support": "support-model",
    }
    assert [info.model for info in registry.describe()] == [
        "triage-model",
        "billing-model",
        "support-model",
    ]


def define(name: str, *handoffs: str, bundle: str = "support") -> AgentDefinition:
    return AgentDefinition(name, f"{name} agent", "Be helpful.", bundle, handoffs)


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        ((define("triage", "sales"),), "unknown agent 'sales'"),
        ((define("triage", "triage"),), "cycle: triage -> triage"),
        (
            (define("triage", "a"), define("a", "b"), define("b", "a")),
            "cycle: a -> b -> a",
        ),
        ((define("triage"), define("triage")), "defined twice"),
        ((define("triage", bundle="nope"),), "no tool bundle named 'nope'"),
        ((define("billing"),), "default agent 'triage'"),
    ],
)
def test_inconsistent_definitions_fail_at_build_time(
    definitions: tuple[AgentDefinition, ...], message: str
) -> None:
    with pytest.raises(AgentConfigError, match=message):
        AgentRegistry(definitions, TOOLS, "gpt-x", provider="offline")


def test_a_diamond_of_handoffs_is_not_a_cycle() -> None:
    definitions = (
        define("triage", "a", "b"),
        define("a", "c"),
        define("b", "c"),
        define("c"),
    )
    registry = AgentRegistry(definitions, TOOLS, "gpt-x", provider="offline")

    assert handoff_targets(registry, "triage") == ["a", "b"]
    assert handoff_targets(registry, "a") == ["c"]
