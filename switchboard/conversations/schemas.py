from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

# Page sizes are part of the API: a larger `limit` is a 422, never a larger body.
CONVERSATION_PAGE_DEFAULT = 20
CONVERSATION_PAGE_MAX = 100
MESSAGE_PAGE_DEFAULT = 100
MESSAGE_PAGE_MAX = 500

# The examples of the OpenAPI document (/docs, /redoc) follow the run of docs/streaming.md.
_CONVERSATION: JsonDict = {
    "id": "447cf61f-f664-41a0-9ea0-1d3d877f5c14",
    "title": "please check my invoice",
    "created_at": "2026-12-03T09:41:07.110000Z",
    "updated_at": "2026-12-03T09:41:08.020000Z",
}
_MESSAGES: list[JsonValue] = [
    {
        "id": "0d4f5e6a-7b8c-4d9e-a0f1-b2c3d4e5f607",
        "role": "user",
        "content": "please check my invoice",
        "agent": None,
        "incomplete": False,
        "created_at": "2026-12-03T09:41:07.115000Z",
    },
    {
        "id": "2efb2999-184d-4022-9f94-af88e5536116",
        "role": "assistant",
        "content": "please check my invoice",
        "agent": "billing",
        "incomplete": False,
        "created_at": "2026-12-03T09:41:08.010000Z",
    },
]
_NEXT_CURSOR = "eyJ0IjoiMjAyNi0xMi0wM1QwOTo0MTowOC4wMjBaIiwiaWQiOiI0NDdjZjYxZiJ9"


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_CONVERSATION], "next_cursor": _NEXT_CURSOR}]}
    )

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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": _MESSAGES, "next_cursor": None}]}
    )

    items: list[MessageRead]
    next_cursor: str | None


class ConversationRead(ConversationSummary):
    """A conversation with one page of its messages, oldest first; ``next_cursor`` (null on
    the last page) continues the messages."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_CONVERSATION, "messages": _MESSAGES, "next_cursor": None}]
        }
    )

    messages: list[MessageRead]
    next_cursor: str | None
