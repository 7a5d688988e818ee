"""Model provider settings: ``OPENAI_*`` and ``OFFLINE_MODEL_*`` variables."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyUrl, BaseModel, Field, SecretStr, field_validator


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
    model: str = Field("gpt-4.1-mini", min_length=1, description="Model of every agent.")
    tracing: bool = Field(False, description="Export Agents SDK traces to the provider.")

    @field_validator("api_key", "base_url", "api", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class OfflineSettings(BaseModel):
    model_token_delay_ms: float = Field(
        5, ge=0, le=10_000, description="Offline model: pause before each streamed word."
    )
