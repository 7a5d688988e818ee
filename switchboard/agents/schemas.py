from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ProviderName = Literal["openai", "offline"]


class AgentInfo(BaseModel):
    """One entry of ``GET /api/v1/agents``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "triage",
                    "description": "First contact: answers simple questions and routes the rest"
                    " to a specialist.",
                    "tools": ["current_time"],
                    "handoffs": ["billing", "support"],
                    "model": "gpt-4.1-mini",
                    "provider": "openai",
                }
            ]
        }
    )

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
