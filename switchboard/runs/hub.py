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
from collections import defaultdict, deque
from collections.abc import AsyncIterator

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from switchboard.runs.events import RunEvent, channel, decode_message, run_of_channel

log = structlog.get_logger("switchboard.runs")

QUEUE_SIZE = 1024
HEALTH_CHECK_SECONDS = 30.0


async def _as_it_is(response: list[bytes]) -> list[bytes]:
    """The pub/sub connection's handler of messages: redis-py's own formats every message for
    a debug log line, logged or not."""
    return response


class Resync:
    """Queued instead of an event when some events may have been missed."""


RESYNC = Resync()


class Subscription:
    """One stream's share of the hub: its run's event batches, queued until it takes them."""

    def __init__(self, run_id: str, quiet_seconds: float) -> None:
        self.run_id = run_id
        self._items: deque[list[RunEvent] | Resync] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        # The quiet timer: a stream that waits this long without hearing anything is told to
        # resynchronise, in case pub/sub lost a message. One timer per stream, moved on when
        # it fires: a timeout around every wait would set and cancel one per batch relayed.
        self._quiet = quiet_seconds
        self._waiting_since: float | None = None
        self._timer = self._loop.call_later(quiet_seconds, self._check_quiet)

    def offer(self, item: list[RunEvent] | Resync) -> None:
        if len(self._items) >= QUEUE_SIZE:
            # A slow reader: drop what is queued and let it catch up from the buffer.
            self._items.clear()
            item = RESYNC
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[list[RunEvent] | Resync]:
        """Everything queued, once there is something."""
        if not self._items:
            self._waiter = self._loop.create_future()
            self._waiting_since = self._loop.time()
            try:
                await self._waiter
            finally:
                self._waiter = self._waiting_since = None
        items = list(self._items)
        self._items.clear()
        return items

    def close(self) -> None:
        self._timer.cancel()

    def _check_quiet(self) -> None:
        now = self._loop.time()
        due = now + self._quiet
        if self._waiting_since is not None:
            if now - self._waiting_since >= self._quiet:
                self.offer(RESYNC)
            else:
                due = self._waiting_since + self._quiet
        self._timer = self._loop.call_at(due, self._check_quiet)


class EventHub:
    def __init__(self, redis: Redis, *, reconnect_seconds: float = 0.5) -> None:
        self._redis = redis
        self._reconnect = reconnect_seconds
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._pubsub: PubSub | None = None
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Subscribing and unsubscribing go out in batches from one task: a command per
        # stream, each waiting its turn on the connection, took seconds with 1,000 streams.
        self._to_subscribe: dict[str, asyncio.Future[None]] = {}
        self._to_unsubscribe: set[str] = set()
        self._changed = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()  # one writer of subscription commands at a time

    @property
    def open_streams(self) -> int:
        return sum(len(subs) for subs in self._subscriptions.values())

    def _ensure_started(self) -> None:
        # Started by the first stream, so a process that never streams holds no connection.
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name="switchboard-event-hub"),
                asyncio.create_task(self._apply_changes(), name="switchboard-event-hub-changes"),
            ]

    async def stop(self) -> None:
        # The tasks are told first: redis-py can swallow a cancellation that lands inside a
        # command, so closing the connection is what finally ends a read in progress.
        self._stopping = True
        self._changed.set()
        if self._tasks:
            self._tasks[0].cancel()
            await asyncio.wait(self._tasks, timeout=0.5)
        if self._pubsub is not None:
            # Closing sends UNSUBSCRIBE; a dead connection must not hold up shutdown.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        for future in self._to_subscribe.values():
            future.cancel()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, run_id: str, *, quiet_seconds: float = 15.0
    ) -> AsyncIterator[Subscription]:
        """Returns once the run's channel is subscribed (or the connection is down, in which
        case the reader subscribes it on reconnecting and the stream resynchronises). A
        subscription that waits ``quiet_seconds`` without hearing anything gets ``RESYNC``."""
        subscription = Subscription(run_id, quiet_seconds)
        self._ensure_started()
        followers = self._subscriptions[run_id]
        followers.add(subscription)
        if len(followers) == 1:
            self._to_unsubscribe.discard(run_id)
            if self._ready.is_set():
                sent = self._to_subscribe.get(run_id)
                if sent is None:
                    sent = self._to_subscribe[run_id] = asyncio.get_running_loop().create_future()
                self._changed.set()
                await asyncio.shield(sent)
        try:
            yield subscription
        finally:
            subscription.close()
            followers.discard(subscription)
            if not followers and self._subscriptions.get(run_id) is followers:
                del self._subscriptions[run_id]
                self._to_unsubscribe.add(run_id)
                self._changed.set()

    async def _apply_changes(self) -> None:
        while True:
            try:
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    await self._changed.wait()
            except TimeoutError:
                idle = True
            else:
                idle = False
                self._changed.clear()
            if self._stopping:
                return
            async with self._lock:
                subscribe, self._to_subscribe = self._to_subscribe, {}
                unsubscribe, self._to_unsubscribe = self._to_unsubscribe, set()
                try:
                    if self._pubsub is not None and self._ready.is_set():
                        if unsubscribe:
                            await self._pubsub.unsubscribe(*map(channel, unsubscribe))
                        if subscribe:
                            await self._pubsub.subscribe(*map(channel, subscribe))
                        if idle:
                            # The reader waits without a timeout: this keeps a quiet
                            # connection in use, and finds it if it died.
                            await self._pubsub.ping()
                except Exception as exc:  # Redis away: never leave a stream waiting on it
                    # The reader reconnects, subscribes every open run and resynchronises.
                    log.warning("runs.hub_change_failed", error=type(exc).__name__)
                    self._ready.clear()
                    await self._drop_connection()
                finally:
                    for sent in subscribe.values():
                        if not sent.done():
                            sent.set_result(None)

    async def _drop_connection(self) -> None:
        """Makes the reader reconnect: a command can fail on a connection that still reads
        (a write timeout). Disconnected, not closed: closing would hand the connection back to
        the pool while the reader still waits on it."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Redis failure: reconnect, never die
                if self._stopping:
                    return
                log.warning("runs.hub_disconnected", error=type(exc).__name__)
            self._ready.clear()
            await asyncio.sleep(self._reconnect)

    async def _listen(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True, push_handler_func=_as_it_is)
        self._pubsub = pubsub
        async with self._lock:
            runs = set(self._subscriptions)
            # A placeholder channel keeps the connection in subscribe mode with no streams.
            await pubsub.subscribe("run:hub", *map(channel, runs))
            self._ready.set()
            # Streams opened while that was being sent went unsubscribed: next batch.
            for run in self._subscriptions.keys() - runs:
                self._to_subscribe.setdefault(run, asyncio.get_running_loop().create_future())
                self._changed.set()
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.offer(RESYNC)
        while True:
            # A message is [b"message", channel, data]; every other reply (subscription
            # changes, pongs) goes through redis-py, which keeps its record of the channels.
            response = await pubsub.parse_response(block=True)
            if response is None:
                continue
            if response[0] != b"message":
                await pubsub.handle_message(response)  # type: ignore[no-untyped-call]
                continue
            run_id = run_of_channel(response[1])
            followers = self._subscriptions.get(run_id)
            if not followers:
                continue  # its last stream has just closed
            try:
                events = decode_message(response[2], run_id)
            except (ValueError, KeyError, TypeError):
                log.warning("runs.hub_bad_message")
                continue
            for subscription in followers:
                subscription.offer(events)
