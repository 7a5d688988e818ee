"""The caller's conversations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Conversations, CurrentPrincipal
from switchboard.conversations.schemas import ConversationPage, ConversationRead

router = APIRouter(prefix="/api/v1", tags=["conversations"])


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    principal: CurrentPrincipal,
    conversations: Conversations,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ConversationPage:
    """Most recently active first; pass `next_cursor` back as `cursor` for the next page."""
    return await conversations.page(principal, limit=limit, cursor=cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationRead)
async def get_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, conversations: Conversations
) -> ConversationRead:
    """A conversation with all its messages, oldest first."""
    return await conversations.get(principal, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, conversations: Conversations
) -> Response:
    """Delete a conversation with its messages and runs, now."""
    await conversations.delete(principal, conversation_id)
    return Response(status_code=204)
