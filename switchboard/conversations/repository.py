"""What the domain needs from a conversation store, and its page cursors.

``PostgresConversationRepository`` is the one Switchboard runs on; unit tests use an
in-memory one (``tests/support/conversations.py``) and a shared contract test keeps the two
answering alike.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Protocol

from switchboard.models import Conversation, Message


class ConversationRepository(Protocol):
    async def add_conversation(self, conversation: Conversation) -> None:
        """Stored with the unit of work: at the latest when it commits."""
        ...

    async def add_message(self, message: Message) -> None:
        """Stored with the unit of work: at the latest when it commits."""
        ...

    async def get(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        conversation_id: uuid.UUID,
    ) -> Conversation | None:
        """The caller's own conversation."""
        ...

    async def page(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Conversation]:
        """Newest updated first, strictly after the ``(updated_at, id)`` cursor."""
        ...

    async def messages(
        self, conversation_id: uuid.UUID, *, last: int | None = None
    ) -> list[Message]:
        """In position order; only the ``last`` ones if given."""
        ...

    async def next_position(self, conversation_id: uuid.UUID) -> int: ...

    async def delete(self, conversation: Conversation) -> None:
        """With its messages and runs."""
        ...

    async def search(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, query: str, *, limit: int
    ) -> list[tuple[Conversation, Message]]:
        """Messages of the caller's conversations holding any word of ``query``, newest first."""
        ...


def encode_cursor(updated_at: datetime, conversation_id: uuid.UUID) -> str:
    raw = json.dumps([updated_at.isoformat(), str(conversation_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """ValueError for anything that is not a cursor we made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, ident = json.loads(raw)
        return datetime.fromisoformat(stamp), uuid.UUID(ident)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
