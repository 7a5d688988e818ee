"""Server-Sent Events: run events on the wire, with pings and send timeouts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from switchboard.runs.events import RunEvent
from switchboard.runs.settings import RunsSettings

# Proxies must neither cache the stream nor buffer it (nginx honours X-Accel-Buffering).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _frames(events: AsyncIterator[RunEvent]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(
            id=str(event.seq),
            event=event.type.value,
            data=json.dumps(event.payload(), separators=(",", ":")),
        )


def event_stream(events: AsyncIterator[RunEvent], settings: RunsSettings) -> EventSourceResponse:
    """Ends after the terminal event; a client that goes away stops only its own stream."""
    return EventSourceResponse(
        _frames(events),
        headers=HEADERS,
        ping=max(1, int(settings.ping_seconds)),
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        send_timeout=settings.send_timeout_seconds,
    )
