from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# Page sizes are part of the API: a larger `limit` is a 422, never a larger body.
CONVERSATION_PAGE_DEFAULT = 20
CONVERSATION_PAGE_MAX = 100
MESSAGE_PAGE_DEFAULT = 100
MESSAGE_PAGE_MAX = 500


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next_cursor: str | None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: str
    content: str
    agent: str | None
    incomplete: bool = Field(
        description="A reply cut short by a cancel or an interrupt: the text sent before it."
    )
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None


class ConversationRead(ConversationSummary):
    """A conversation with one page of its messages, oldest first; ``next_cursor`` (null on
    the last page) continues the messages."""

    messages: list[MessageRead]
    next_cursor: str | None
