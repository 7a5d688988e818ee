"""Following a run: replay what was missed, then live events, each once and in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis

from switchboard.runs.emitter import REDIS_DOWN
from switchboard.runs.errors import EventsLostError
from switchboard.runs.events import RunEvent, entry_event, replay, stream_key
from switchboard.runs.hub import RESYNC, EventHub, Resync

# Looks the run up in Postgres: its terminal event if it has finished, else None.
TerminalLookup = Callable[[int], Awaitable[RunEvent | None]]


async def follow(
    run_id: str,
    *,
    after: int,
    hub: EventHub,
    redis: Redis,
    terminal_from_database: TerminalLookup,
    resync_seconds: float = 15.0,
) -> AsyncIterator[RunEvent]:
    """Events of ``run_id`` numbered above ``after``, ending with the terminal one.

    The subscription is taken before the buffer is read, so an event published in between
    arrives twice at worst, and the duplicate is dropped by its sequence number. Pub/sub
    delivers at most once, so a stream that hears nothing for ``resync_seconds`` reads the
    buffer again. Raises ``EventsLostError`` when the buffer no longer holds the next event.
    """
    async with hub.subscribe(run_id) as subscription:
        last = after
        item: RunEvent | Resync = RESYNC
        while True:
            if isinstance(item, Resync) or item.seq > last + 1:
                batch = await _catch_up(redis, run_id, last, terminal_from_database)
                if batch is None:
                    return  # the client already had the terminal event
            elif item.seq <= last:
                if item.type.is_terminal:
                    return
                batch = []
            else:
                batch = [item]
            for event in batch:
                if event.seq <= last:
                    continue
                if event.seq != last + 1:
                    raise EventsLostError(run_id, last)
                yield event
                last = event.seq
                if event.type.is_terminal:
                    return
            try:
                item = await asyncio.wait_for(subscription.queue.get(), resync_seconds)
            except TimeoutError:
                item = RESYNC


async def _catch_up(
    redis: Redis, run_id: str, last: int, terminal_from_database: TerminalLookup
) -> list[RunEvent] | None:
    """Buffered events after ``last``; None if the run ended at or before ``last``."""
    try:
        missed = await replay(redis, run_id, after=last)
        if missed:
            return missed
        newest = await redis.xrevrange(stream_key(run_id), count=1)
    except REDIS_DOWN:
        return []  # the hub resynchronises every stream once Redis is back
    if newest:
        event = entry_event(newest[0][1])
        return None if event.type.is_terminal and event.seq <= last else []
    # No buffer: it expired, or Redis lost it. A finished run answers from Postgres.
    terminal = await terminal_from_database(last + 1)
    return [terminal] if terminal is not None else []
