"""The cursors of conversation pages, which end at ``(updated_at, id)``, and of message
pages, which end at ``(conversation id, position)``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, TypeAdapter

from switchboard.kit.cursor import InvalidCursorError, UtcDatetime, decode_cursor, encode_cursor

# Message.position is a Postgres integer.
Position = Annotated[int, Field(ge=0, le=2**31 - 1)]

_conversation_key = TypeAdapter(tuple[UtcDatetime, uuid.UUID])
_message_key = TypeAdapter(tuple[uuid.UUID, Position])


def encode_conversation_cursor(updated_at: datetime, conversation_id: uuid.UUID) -> str:
    return encode_cursor(_conversation_key, (updated_at.astimezone(UTC), conversation_id))


def decode_conversation_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    return decode_cursor(_conversation_key, cursor)


def encode_message_cursor(conversation_id: uuid.UUID, position: int) -> str:
    return encode_cursor(_message_key, (conversation_id, position))


def decode_message_cursor(cursor: str, conversation_id: uuid.UUID) -> int:
    """The position a page of ``conversation_id`` ended at; a cursor of another conversation
    is refused as any other made-up one."""
    owner, position = decode_cursor(_message_key, cursor)
    if owner != conversation_id:
        raise InvalidCursorError("The cursor belongs to another conversation.")
    return position
