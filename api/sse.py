"""Server-Sent Events: run events on the wire, with pings and send timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from switchboard.runs.errors import EventsLostError
from switchboard.runs.events import EventType, RunEvent
from switchboard.runs.metrics import EVENTS_RELAYED, STREAMS_INTERRUPTED, STREAMS_OPEN
from switchboard.runs.settings import RunsSettings
from switchboard.runs.stream import StreamFailedError

log = structlog.get_logger("switchboard.api")

# Proxies must neither cache the stream nor buffer it (nginx honours X-Accel-Buffering).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


STREAM_ERROR = "stream.error"


def _data(payload: dict[str, object]) -> str:
    return json.dumps(payload, separators=(",", ":"))


# A run event as ServerSentEvent(id=..., event=..., data=...).encode() writes it. Its data is
# the event's JSON as published, which JSON keeps on one line, so it is written as it is.
_FRAME = b"id: %d\r\nevent: %b\r\ndata: %b\r\n\r\n"
_NAMES = {kind: kind.value.encode() for kind in EventType}


def _encode(event: RunEvent) -> bytes:
    return _FRAME % (event.seq, _NAMES[event.type], event.data_json())


async def _frames(batches: AsyncIterator[list[RunEvent]]) -> AsyncIterator[bytes]:
    # A batch is written in one piece: one trip through the middleware and the socket.
    STREAMS_OPEN.inc()
    try:
        async for batch in batches:
            yield b"".join(map(_encode, batch))
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


class _SendWatch:
    """Cancels a send still going ``seconds`` after it started. One timer per stream, moved
    on when it fires, instead of sse-starlette's cancel scope and timer per send, which took
    about a third of the API's CPU for a stream relaying one event per write."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._sending: dict[asyncio.Task[Any], float] = {}  # the sends on their way, by task
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        self._sending[task] = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._seconds, self._check)
        return task

    def end(self, task: asyncio.Task[Any]) -> None:
        del self._sending[task]
        self.expired.discard(task)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        due = now + self._seconds
        for task, since in self._sending.items():
            if now - since >= self._seconds:
                if task not in self.expired:
                    self.expired.add(task)
                    task.cancel()
            else:
                due = min(due, since + self._seconds)
        self._timer = self._loop.call_at(due, self._check)


class _HeldStream(EventSourceResponse):
    """A stream holding a slot: ``opened`` when it goes on the wire, ``closed`` once it ends
    however it ends (terminal event, client gone, send timeout, server shutdown)."""

    opened: Callable[[], None] | None = None
    closed: Callable[[], Awaitable[None]] | None = None
    _watch: _SendWatch | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.opened is not None:
            self.opened()
        if self.send_timeout is not None:
            self._watch = _SendWatch(self.send_timeout)
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._watch is not None:
                self._watch.close()
            if self.closed is not None:
                with anyio.CancelScope(shield=True):
                    await self.closed()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        """As sse-starlette's: ``SendTimeoutError`` once a send (of events or of a ping) has
        waited ``send_timeout`` for the client, timed by ``_SendWatch``."""
        watch = self._watch
        if watch is None:
            await super()._send_with_timeout(send, message)
            return
        task = watch.start()
        try:
            await send(message)
        except asyncio.CancelledError:
            if task not in watch.expired:
                raise
            task.uncancel()
            raise SendTimeoutError from None
        finally:
            watch.end(task)


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
