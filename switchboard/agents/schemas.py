from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ProviderName = Literal["openai", "offline"]


class AgentInfo(BaseModel):
    """One entry of ``GET /api/v1/agents``."""

    name: str
    description: str
    tools: list[str]
    handoffs: list[str]
    model: str = Field(
        description="The model the agent asks its provider for, from OPENAI_MODEL, "
        "OPENAI_STRONG_MODEL or OPENAI_AGENT_MODELS."
    )
    provider: ProviderName = Field(
        description="`openai`: the OpenAI API or the compatible server at OPENAI_BASE_URL. "
        "`offline`: the built-in offline model answers in place of every model."
    )
