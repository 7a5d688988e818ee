"""A worker's outbox of one run's events: numbered in order, held while Redis is away.

A Redis outage must not fail a run: the model keeps answering and the reply is stored in
Postgres either way. Events that cannot be published wait here, in order, and go out once
Redis answers again, so a client that reconnects still receives every event once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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


class RunEmitter:
    def __init__(self, publisher: EventPublisher, run_id: str, *, last: int = 0) -> None:
        self._publisher = publisher
        self._run_id = run_id
        self.last = last
        self._pending: deque[tuple[EventType, dict[str, Any]]] = deque()
        self._retry_at = 0.0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def emit(self, type_: EventType, **data: Any) -> None:
        self._pending.append((type_, data))
        if time.monotonic() >= self._retry_at:
            await self._drain()

    async def flush(self, *, within: float, pause: float = RETRY_PAUSE_SECONDS) -> bool:
        """Keeps trying for ``within`` seconds; False if events are still held."""
        deadline = time.monotonic() + within
        while not await self._drain():
            if time.monotonic() >= deadline:
                log.error("runs.events_dropped", run_id=self._run_id, count=self.pending)
                return False
            await asyncio.sleep(pause)
        return True

    async def _drain(self) -> bool:
        while self._pending:
            type_, data = self._pending[0]
            try:
                self.last = await self._publisher.publish(
                    self._run_id, type_, after=self.last, **data
                )
            except REDIS_DOWN as exc:
                PUBLISH_FAILURES.inc()
                self._retry_at = time.monotonic() + RETRY_PAUSE_SECONDS
                log.warning("runs.publish_held", run_id=self._run_id, error=type(exc).__name__)
                return False
            self._pending.popleft()
            EVENTS_PUBLISHED.labels(type_.value).inc()
        return True
