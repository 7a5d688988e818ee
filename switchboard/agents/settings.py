"""Model provider settings: ``OPENAI_*`` and ``OFFLINE_MODEL_*`` variables; ``AGENTS_*``, what
becomes of the Agents SDK's own spans."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import AnyUrl, BaseModel, Field, SecretStr, field_validator

from switchboard.agents.definitions import AGENT_NAMES, AgentDefinition, ModelTier


class OpenAISettings(BaseModel):
    api_key: SecretStr | None = Field(
        None, description="With a key, agents run on the real provider; without, offline."
    )
    base_url: AnyUrl | None = Field(
        None, description="Any OpenAI-compatible server; the official API when unset."
    )
    api: Literal["responses", "chat_completions"] | None = Field(
        None,
        description=(
            "Wire format: responses or chat_completions; unset, responses without a base URL"
            " and chat_completions with one."
        ),
    )
    model: str = Field(
        "gpt-4.1-mini",
        min_length=1,
        description="Model of the light tier (triage) and of any agent not configured otherwise.",
    )
    strong_model: str = Field(
        "gpt-4.1", min_length=1, description="Model of the strong tier (billing, support)."
    )
    agent_models: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Per-agent models over their tier's (JSON object, agent name to model, e.g."
            ' {"support": "gpt-4.1-mini"}); a name that is no agent is refused at start-up.'
        ),
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description=(
            "Retries of a model call answered 408, 409, 429 or 5xx or cut off before its"
            " answer, with growing delays and jitter, Retry-After honoured."
        ),
    )
    timeout_seconds: float = Field(
        60,
        gt=0,
        le=3600,
        description=(
            "Longest wait for the provider's next bytes (a stalled stream is cut after it) and"
            " for a whole non-streamed call."
        ),
    )
    connect_timeout_seconds: float = Field(
        5, gt=0, le=120, description="Longest wait to connect to the provider."
    )
    tracing: bool = Field(False, description="Export Agents SDK traces to the provider.")

    @field_validator("api_key", "base_url", "api", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("agent_models")
    @classmethod
    def _known_agents(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - AGENT_NAMES)
        if unknown:
            raise ValueError(
                f"no agent named {', '.join(unknown)}; the agents are"
                f" {', '.join(sorted(AGENT_NAMES))}"
            )
        if any(not model.strip() for model in value.values()):
            raise ValueError("a model name is empty")
        return value

    def model_for(self, definition: AgentDefinition) -> str:
        """The model an agent asks its provider for: its own, else its tier's."""
        if definition.name in self.agent_models:
            return self.agent_models[definition.name]
        return self.strong_model if definition.model_tier is ModelTier.strong else self.model


class OfflineSettings(BaseModel):
    model_token_delay_ms: float = Field(
        5, ge=0, le=10_000, description="Offline model: pause before each streamed word."
    )


class AgentsTracing(enum.StrEnum):
    none = "none"
    otel = "otel"


class AgentsSettings(BaseModel):
    tracing: AgentsTracing = Field(
        AgentsTracing.none,
        description=(
            "The Agents SDK's spans (agent, model call, tool, handoff): none, or otel to record"
            " them in the run's OpenTelemetry trace while tracing is on (OPENAI_TRACING sends"
            " them to OpenAI, independently)."
        ),
    )
