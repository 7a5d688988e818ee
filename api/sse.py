"""Server-Sent Events: run events on the wire, with pings and send timeouts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from switchboard.runs.errors import EventsLostError
from switchboard.runs.events import RunEvent
from switchboard.runs.metrics import EVENTS_RELAYED, STREAMS_INTERRUPTED, STREAMS_OPEN
from switchboard.runs.settings import RunsSettings
from switchboard.runs.stream import StreamFailedError

log = structlog.get_logger("switchboard.api")

# Proxies must neither cache the stream nor buffer it (nginx honours X-Accel-Buffering).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


STREAM_ERROR = "stream.error"


def _data(payload: dict[str, object]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _encode(event: RunEvent) -> bytes:
    return ServerSentEvent(
        id=str(event.seq), event=event.type.value, data=_data(event.payload())
    ).encode()


async def _frames(batches: AsyncIterator[list[RunEvent]]) -> AsyncIterator[bytes]:
    # A batch is written in one piece: one trip through the middleware and the socket.
    STREAMS_OPEN.inc()
    try:
        async for batch in batches:
            yield b"".join(_encode(event) for event in batch)
            EVENTS_RELAYED.inc(len(batch))
    except (EventsLostError, StreamFailedError) as exc:
        # The response has started: the stream ends with an event saying why, not mid-body.
        # No id: the client's Last-Event-ID stays at the last event it really received.
        if isinstance(exc, StreamFailedError):
            log.error("runs.stream_failed", run_id=exc.run_id, exc_info=exc.__cause__)
        STREAMS_INTERRUPTED.labels(exc.code).inc()
        yield ServerSentEvent(
            event=STREAM_ERROR,
            data=_data({"run_id": exc.run_id, "code": exc.code, "message": str(exc)}),
        ).encode()
    finally:
        STREAMS_OPEN.dec()


class _HeldStream(EventSourceResponse):
    """A stream holding a slot: ``opened`` when it goes on the wire, ``closed`` once it ends
    however it ends (terminal event, client gone, send timeout, server shutdown)."""

    opened: Callable[[], None] | None = None
    closed: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.opened is not None:
            self.opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.closed is not None:
                with anyio.CancelScope(shield=True):
                    await self.closed()


def event_stream(
    batches: AsyncIterator[list[RunEvent]],
    settings: RunsSettings,
    *,
    headers: Mapping[str, str] | None = None,
    opened: Callable[[], None] | None = None,
    closed: Callable[[], Awaitable[None]] | None = None,
) -> EventSourceResponse:
    """Ends after the terminal event; a client that goes away stops only its own stream."""
    response = _HeldStream(
        _frames(batches),
        headers={**HEADERS, **(headers or {})},
        ping=max(1, int(settings.ping_seconds)),
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        send_timeout=settings.send_timeout_seconds,
    )
    response.opened, response.closed = opened, closed
    return response
