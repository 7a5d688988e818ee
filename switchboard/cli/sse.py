"""Server-Sent Events as the API sends them, read from an HTTP response's lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One dispatched event: ``id`` is ``None`` for events sent without one (``stream.error``)."""

    event: str
    data: dict[str, Any]
    id: int | None


async def parse_events(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    """The events of a stream, each yielded once its blank line arrived.

    An event cut off by the end of the stream is dropped, as the SSE specification says: the
    caller resumes after the last event it was given, so a half-received one is sent again whole.
    """
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                yield Event(event, payload if isinstance(payload, dict) else {}, event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a ping
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and value.isdigit():
            event_id = int(value)
