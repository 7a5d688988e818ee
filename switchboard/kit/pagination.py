"""Keyset pages ordered by ``(created_at, id)``, and the opaque cursor that continues one.

A cursor is base64url of a JSON array holding the last item's ``created_at`` and ``id``; the
next page starts strictly after that pair, so rows added or removed meanwhile never make a page
repeat or skip one that stayed. Decoding accepts only the exact text encoding writes, so a
cursor a client altered, truncated or made up is refused whole, never half read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import AwareDatetime, TypeAdapter

from switchboard.kit.encoding import b64url_decode, b64url_encode
from switchboard.kit.errors import AppError

CreatedKey = tuple[datetime, uuid.UUID]
R = TypeVar("R")
T = TypeVar("T")

_created_key: TypeAdapter[tuple[AwareDatetime, uuid.UUID]] = TypeAdapter(
    tuple[AwareDatetime, uuid.UUID]
)


class InvalidCursorError(AppError):
    status = 422
    code = "validation_error"
    title = "Unprocessable content"

    def __init__(self) -> None:
        super().__init__("The cursor is not one this API returned.")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(key: CreatedKey) -> str:
    created_at, item_id = key
    return b64url_encode(json.dumps([created_at.isoformat(), str(item_id)]).encode())


def decode_cursor(cursor: str) -> CreatedKey:
    try:
        key = _created_key.validate_json(b64url_decode(cursor), strict=True)
        canonical = encode_cursor(key)
    # ValidationError is a ValueError; OverflowError from a timestamp at the edge of the range.
    except (ValueError, OverflowError):
        raise InvalidCursorError() from None
    if canonical != cursor:
        raise InvalidCursorError()
    return key


def keyset_page(
    rows: Sequence[R], limit: int, key: Callable[[R], CreatedKey], read: Callable[[R], T]
) -> Page[T]:
    """The page of ``rows``, fetched as ``limit + 1`` so a further row says another page follows."""
    shown = rows[:limit]
    more = len(rows) > limit and bool(shown)
    return Page([read(row) for row in shown], encode_cursor(key(shown[-1])) if more else None)
