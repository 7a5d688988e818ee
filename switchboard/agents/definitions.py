"""The agents Switchboard offers, declared as data so the registry and the API agree."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ModelTier(enum.StrEnum):
    """What an agent needs from its model; settings choose the model of each tier."""

    light = "light"
    """Cheap and fast: routing and short answers (``OPENAI_MODEL``)."""
    strong = "strong"
    """Careful work with tools (``OPENAI_STRONG_MODEL``)."""


ApprovalRule = bool | Callable[[Mapping[str, Any]], bool]
"""When a tool call waits for a person's approval: always (True), or when a predicate on the
call's arguments says so."""


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    description: str
    instructions: str
    tool_bundle: str
    handoffs: tuple[str, ...] = ()
    model_tier: ModelTier = ModelTier.light
    needs_approval: Mapping[str, ApprovalRule] = field(default_factory=dict)
    """Tools of this agent whose calls wait for a person's approval before they run."""


TRIAGE = AgentDefinition(
    name="triage",
    description="First contact: answers simple questions and routes the rest to a specialist.",
    instructions=(
        "You are the first agent a user talks to. Answer short general questions yourself. "
        "Hand off to the billing agent for invoices, payments, plans and usage, and to the "
        "support agent for problems with the product or questions about earlier conversations."
    ),
    tool_bundle="triage",
    handoffs=("billing", "support"),
    model_tier=ModelTier.light,
)

BILLING = AgentDefinition(
    name="billing",
    description="Invoices, plans, payments and the organisation's token usage.",
    instructions=(
        "You help with billing: invoices, subscription plans, payments and usage. Use the "
        "usage_summary tool for questions about consumption this month. Use "
        "cancel_subscription when the user asks to cancel their subscription; the user "
        "approves the call before it runs. Never invent amounts."
    ),
    tool_bundle="billing",
    model_tier=ModelTier.strong,
    needs_approval={"cancel_subscription": True},
)

SUPPORT = AgentDefinition(
    name="support",
    description="Product help, troubleshooting and finding earlier conversations.",
    instructions=(
        "You help users with the product. Use search_conversations to find what the user "
        "discussed before when that helps. Be concise and concrete."
    ),
    tool_bundle="support",
    model_tier=ModelTier.strong,
)

DEFINITIONS: tuple[AgentDefinition, ...] = (TRIAGE, BILLING, SUPPORT)
AGENT_NAMES: frozenset[str] = frozenset(definition.name for definition in DEFINITIONS)
