"""A worker's outbox of one run's events: numbered in order, held while Redis is away.

A Redis outage must not fail a run: the model keeps answering and the reply is stored in
Postgres either way. Events that cannot be published wait here, in order, and go out once
Redis answers again, so a client that reconnects still receives every event once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from itertools import islice
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.runs.events import EventPublisher, EventType
from switchboard.runs.metrics import EVENTS_PUBLISHED, PUBLISH_FAILURES

log = structlog.get_logger("switchboard.runs")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# After a failed publish, new events only queue up for this long: each attempt against a
# dead server costs its connect timeout, which must not slow the run's model stream.
RETRY_PAUSE_SECONDS = 0.5


# Most events sent in one call: big enough to amortise a round trip, small enough that a
# single call never holds Redis for long.
BATCH = 100


class RunEmitter:
    """Events are sent in order, several at a time when several are waiting. ``emit`` returns
    once everything queued so far is sent (or held while Redis is away); ``emit_soon`` only
    queues, and a background send takes the event with whatever else is waiting by then, so a
    fast model stream is not paced by Redis round trips."""

    def __init__(self, publisher: EventPublisher, run_id: str, *, last: int = 0) -> None:
        self._publisher = publisher
        self._run_id = run_id
        self.last = last
        self._pending: deque[tuple[EventType, dict[str, Any]]] = deque()
        self._retry_at = 0.0
        self._lock = asyncio.Lock()  # one send at a time keeps the numbers in order
        self._sender: asyncio.Task[bool] | None = None
        self._error: BaseException | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def emit(self, type_: EventType, **data: Any) -> None:
        self._pending.append((type_, data))
        self._raise_failure()
        if time.monotonic() >= self._retry_at:
            await self._drain()

    def emit_soon(self, type_: EventType, **data: Any) -> None:
        self._pending.append((type_, data))
        self._raise_failure()
        self._send_soon()

    def emit_with_next(self, type_: EventType, *, within: float, **data: Any) -> None:
        """Queues the event to go out with the next one, or alone after ``within`` seconds:
        one publish instead of two when the next follows quickly."""
        self._pending.append((type_, data))
        self._raise_failure()
        asyncio.get_running_loop().call_later(within, self._send_soon)

    def _send_soon(self) -> None:
        idle = self._sender is None or self._sender.done()
        if self._pending and idle and time.monotonic() >= self._retry_at:
            self._sender = asyncio.create_task(self._send_in_background())

    async def flush(self, *, within: float, pause: float = RETRY_PAUSE_SECONDS) -> bool:
        """Keeps trying for ``within`` seconds; False if events are still held."""
        deadline = time.monotonic() + within
        while not await self._drain():
            if time.monotonic() >= deadline:
                log.error("runs.events_dropped", run_id=self._run_id, count=self.pending)
                return False
            await asyncio.sleep(pause)
        self._raise_failure()
        return True

    async def _send_in_background(self) -> bool:
        try:
            return await self._drain()
        except Exception as exc:  # surfaces on the run's next emit or flush
            self._error = exc
            return False

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def _drain(self) -> bool:
        async with self._lock:
            while self._pending:
                batch = list(islice(self._pending, BATCH))
                try:
                    self.last = await self._publisher.publish_many(
                        self._run_id, batch, after=self.last
                    )
                except REDIS_DOWN as exc:
                    PUBLISH_FAILURES.inc()
                    self._retry_at = time.monotonic() + RETRY_PAUSE_SECONDS
                    log.warning("runs.publish_held", run_id=self._run_id, error=type(exc).__name__)
                    return False
                for type_, _ in batch:
                    self._pending.popleft()
                    EVENTS_PUBLISHED.labels(type_.value).inc()
            return True
