"""Keyset pages, and the cursor that continues one.

A page starts strictly after the key its cursor holds (``kit/cursor.py`` writes and checks
it), so rows added or removed meanwhile never make a page repeat or skip one that stayed.
``keyset_page`` cuts every list's page; the ``(created_at, id)`` cursor here serves the lists
ordered that way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import TypeAdapter

from switchboard.kit.cursor import UtcDatetime, decode_cursor, encode_cursor

CreatedKey = tuple[datetime, uuid.UUID]
R = TypeVar("R")
T = TypeVar("T")

_created_key: TypeAdapter[tuple[datetime, uuid.UUID]] = TypeAdapter(tuple[UtcDatetime, uuid.UUID])


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_created_cursor(key: CreatedKey) -> str:
    created_at, item_id = key
    return encode_cursor(_created_key, (created_at.astimezone(UTC), item_id))


def decode_created_cursor(cursor: str) -> CreatedKey:
    return decode_cursor(_created_key, cursor)


def keyset_page(
    rows: Sequence[R], limit: int, cursor: Callable[[R], str], read: Callable[[R], T]
) -> Page[T]:
    """The page of ``rows``, fetched as ``limit + 1`` so a further row says another page
    follows; its cursor is ``cursor`` of the last row shown."""
    shown = rows[:limit]
    more = len(rows) > limit and bool(shown)
    return Page([read(row) for row in shown], cursor(shown[-1]) if more else None)
