"""The caller's conversations and the agents that can answer in them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import CurrentPrincipal
from api.routes.runs import Registry, Runs
from switchboard.agents.schemas import AgentInfo
from switchboard.runs.schemas import ConversationPage, ConversationRead

router = APIRouter(prefix="/api/v1", tags=["conversations"])


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    principal: CurrentPrincipal,
    runs: Runs,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ConversationPage:
    """Most recently active first; pass `next_cursor` back as `cursor` for the next page."""
    return await runs.conversation_page(principal, limit=limit, cursor=cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationRead)
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs
) -> ConversationRead:
    """A conversation with all its messages, oldest first."""
    return await runs.conversation(principal, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs
) -> Response:
    """Delete a conversation with its messages and runs, now."""
    await runs.delete_conversation(principal, conversation_id)
    return Response(status_code=204)


@router.get("/agents", response_model=list[AgentInfo])
async def list_agents(_: CurrentPrincipal, registry: Registry) -> list[AgentInfo]:
    """Every agent: what it does, its tools, and whom it hands off to."""
    return registry.describe()
