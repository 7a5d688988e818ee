from __future__ import annotations

from pydantic import BaseModel


class AgentInfo(BaseModel):
    """One entry of ``GET /api/v1/agents``."""

    name: str
    description: str
    tools: list[str]
    handoffs: list[str]
