"""The opaque cursor of a conversation page: the last item's ``(updated_at, id)``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from switchboard.kit.encoding import b64url_decode, b64url_encode


def encode_cursor(updated_at: datetime, conversation_id: uuid.UUID) -> str:
    raw = json.dumps([updated_at.isoformat(), str(conversation_id)]).encode()
    return b64url_encode(raw)


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """ValueError for anything that is not a cursor we made."""
    try:
        raw = b64url_decode(cursor)
        stamp, ident = json.loads(raw)
        return datetime.fromisoformat(stamp), uuid.UUID(ident)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
