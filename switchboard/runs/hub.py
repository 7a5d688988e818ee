"""One Redis subscriber per process, fanning run events out to every open stream.

However many streams are open, a process holds one pub/sub connection: a stream subscribes its
run's channel on that connection and gets a queue of event batches (a message carries every
event its worker sent in one call). When the connection drops, the reader
reconnects, resubscribes every channel and tells each subscription to resynchronise from the
replay buffer, so nothing published meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from switchboard.runs.events import RunEvent, channel, decode_message

log = structlog.get_logger("switchboard.runs")

QUEUE_SIZE = 1024


class Resync:
    """Queued instead of an event when some events may have been missed."""


RESYNC = Resync()


@dataclass(eq=False)
class Subscription:
    run_id: str
    queue: asyncio.Queue[list[RunEvent] | Resync] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )

    def offer(self, item: list[RunEvent] | Resync) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A slow reader: drop what is queued and let it catch up from the buffer.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class EventHub:
    def __init__(self, redis: Redis, *, reconnect_seconds: float = 0.5) -> None:
        self._redis = redis
        self._reconnect = reconnect_seconds
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._pubsub: PubSub | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._subscriptions.values())

    def _ensure_started(self) -> None:
        # Started by the first stream, so a process that never streams holds no connection.
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="switchboard-event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # A read blocked inside the Redis client may take a moment to notice; shutdown
            # does not wait on it for long.
            await asyncio.wait({self._task}, timeout=2)
        if self._pubsub is not None:
            # Closing sends UNSUBSCRIBE; a dead connection must not hold up shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(run_id)
        self._ensure_started()
        async with self._lock:
            first = not self._subscriptions[run_id]
            self._subscriptions[run_id].add(subscription)
            if first:
                await self._send_subscribe(run_id)
        try:
            yield subscription
        finally:
            async with self._lock:
                self._subscriptions[run_id].discard(subscription)
                if not self._subscriptions[run_id]:
                    del self._subscriptions[run_id]
                    await self._send_unsubscribe(run_id)

    async def _send_subscribe(self, run_id: str) -> None:
        # While disconnected, the reader subscribes every open run when it reconnects, and
        # the new subscription resynchronises from the buffer anyway.
        if self._pubsub is not None and self._ready.is_set():
            try:
                await self._pubsub.subscribe(channel(run_id))
            except (ConnectionError, OSError):
                self._ready.clear()

    async def _send_unsubscribe(self, run_id: str) -> None:
        if self._pubsub is not None and self._ready.is_set():
            with contextlib.suppress(ConnectionError, OSError):
                await self._pubsub.unsubscribe(channel(run_id))

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Redis failure: reconnect, never die
                log.warning("runs.hub_disconnected", error=type(exc).__name__)
            self._ready.clear()
            await asyncio.sleep(self._reconnect)

    async def _listen(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub = pubsub
        async with self._lock:
            # A placeholder channel keeps the connection in subscribe mode with no streams.
            await pubsub.subscribe("run:hub", *(channel(run) for run in self._subscriptions))
            self._ready.set()
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.offer(RESYNC)
        while True:
            message = await pubsub.get_message(timeout=30.0)
            if message is None or message["type"] != "message":
                continue
            try:
                events = decode_message(message["data"])
            except (ValueError, KeyError, TypeError):
                log.warning("runs.hub_bad_message")
                continue
            for subscription in tuple(self._subscriptions.get(events[0].run_id, ())):
                subscription.offer(events)
