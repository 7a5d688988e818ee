"""The caller's conversations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Conversations, CurrentPrincipal
from api.errors import problem_responses
from switchboard.auth.errors import InvalidTokenError
from switchboard.conversations.errors import ConversationNotFoundError
from switchboard.conversations.schemas import (
    CONVERSATION_PAGE_DEFAULT,
    CONVERSATION_PAGE_MAX,
    MESSAGE_PAGE_DEFAULT,
    MESSAGE_PAGE_MAX,
    ConversationPage,
    ConversationRead,
    MessagePage,
)
from switchboard.kit.text import SafeStr

router = APIRouter(
    prefix="/api/v1", tags=["conversations"], responses=problem_responses(InvalidTokenError, 503)
)
NOT_FOUND = problem_responses(ConversationNotFoundError)

Cursor = Annotated[
    SafeStr | None,
    Query(
        max_length=200,
        description="`next_cursor` of the previous page; absent or empty for the first page.",
    ),
]
MessageLimit = Annotated[int, Query(ge=1, le=MESSAGE_PAGE_MAX)]


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    principal: CurrentPrincipal,
    conversations: Conversations,
    limit: Annotated[int, Query(ge=1, le=CONVERSATION_PAGE_MAX)] = CONVERSATION_PAGE_DEFAULT,
    cursor: Cursor = None,
) -> ConversationPage:
    """Most recently active first; pass `next_cursor` back as `cursor` for the next page."""
    return await conversations.page(principal, limit=limit, cursor=cursor)


@router.get(
    "/conversations/{conversation_id}", response_model=ConversationRead, responses=NOT_FOUND
)
async def get_conversation(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    conversations: Conversations,
    limit: MessageLimit = MESSAGE_PAGE_DEFAULT,
    cursor: Cursor = None,
) -> ConversationRead:
    """A conversation with a page of its messages, oldest first; `next_cursor` (null on the
    last page) continues them, here or at `/conversations/{id}/messages`."""
    return await conversations.get(principal, conversation_id, limit=limit, cursor=cursor)


@router.get(
    "/conversations/{conversation_id}/messages", response_model=MessagePage, responses=NOT_FOUND
)
async def list_messages(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    conversations: Conversations,
    limit: MessageLimit = MESSAGE_PAGE_DEFAULT,
    cursor: Cursor = None,
) -> MessagePage:
    """A page of a conversation's messages, oldest first; pass `next_cursor` back as `cursor`
    for the next page."""
    return await conversations.messages(principal, conversation_id, limit=limit, cursor=cursor)


@router.delete("/conversations/{conversation_id}", status_code=204, responses=NOT_FOUND)
async def delete_conversation(
    conversation_id: uuid.UUID, principal: CurrentPrincipal, conversations: Conversations
) -> Response:
    """Delete a conversation with its messages and runs, now."""
    await conversations.delete(principal, conversation_id)
    return Response(status_code=204)
