"""Cancel notices for the runs a worker process executes, on one pub/sub connection.

Cancelling sets the run's flag (``run:{id}:cancel``) and publishes a notice on the channel of
the same name. A worker process listens to every run's notices with one pattern subscription
and wakes the run's guard at once, from any API process to any worker. The guard also reads
the flag every ``RUNS_CANCEL_POLL_SECONDS``, which covers a notice sent while this connection
was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Iterator, Sequence

import structlog
from redis.asyncio import Redis

from switchboard.runs.events import CANCEL_PATTERN, cancel_key, run_of_cancel_channel

log = structlog.get_logger("switchboard.runs")


async def raise_cancel_flags(redis: Redis, run_ids: Sequence[uuid.UUID], ttl: int) -> None:
    """Sets each run's cancel flag and publishes its notice, in one transaction."""
    async with redis.pipeline(transaction=True) as pipe:
        for run_id in run_ids:
            pipe.set(cancel_key(str(run_id)), b"1", ex=ttl)
            pipe.publish(cancel_key(str(run_id)), b"1")
        await pipe.execute()


class CancelNotices:
    def __init__(self, redis: Redis, *, reconnect_seconds: float = 0.5) -> None:
        self._redis = redis
        self._reconnect = reconnect_seconds
        self._watching: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, run_id: str, wake: asyncio.Event) -> Iterator[None]:
        """While inside, a cancel notice for ``run_id`` sets ``wake``."""
        if self._task is None:  # the first run starts the listener, inside the loop
            # The process's listener: not part of the trace or log context of its first run.
            self._task = asyncio.create_task(
                self._run(), name="switchboard-cancel-notices", context=contextvars.Context()
            )
        self._watching[run_id] = wake
        try:
            yield
        finally:
            self._watching.pop(run_id, None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Redis failure: reconnect; the flag still works
                log.warning("runs.cancel_notices_disconnected", error=type(exc).__name__)
            await asyncio.sleep(self._reconnect)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(CANCEL_PATTERN)
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message["type"] != "pmessage":
                    continue
                wake = self._watching.get(run_of_cancel_channel(message["channel"]))
                if wake is not None:
                    wake.set()
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
