"""The agents that can answer in a conversation."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentPrincipal, Registry
from api.errors import problem_responses
from switchboard.agents.schemas import AgentInfo
from switchboard.auth.errors import InvalidTokenError

router = APIRouter(
    prefix="/api/v1", tags=["conversations"], responses=problem_responses(InvalidTokenError, 503)
)


@router.get("/agents", response_model=list[AgentInfo])
async def list_agents(_: CurrentPrincipal, registry: Registry) -> list[AgentInfo]:
    """Every agent: what it does, its tools, and whom it hands off to."""
    return registry.describe()
