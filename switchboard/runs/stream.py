"""Following a run: replay what was missed, then live events, each once and in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis

from switchboard.runs.events import RunEvent, entry_event, replay, stream_key
from switchboard.runs.hub import EventHub, Resync

# Looks the run up in Postgres: its terminal event if it has finished, else None.
TerminalLookup = Callable[[int], Awaitable[RunEvent | None]]


async def follow(
    run_id: str,
    *,
    after: int,
    hub: EventHub,
    redis: Redis,
    terminal_from_database: TerminalLookup,
) -> AsyncIterator[RunEvent]:
    """Events of ``run_id`` numbered above ``after``, ending with the terminal one.

    The subscription is taken before the buffer is read, so an event published in between
    arrives twice at worst, and the duplicate is dropped by its sequence number.
    """
    async with hub.subscribe(run_id) as subscription:
        last = after
        missed = await replay(redis, run_id, after=last)
        for event in missed:
            yield event
            last = event.seq
            if event.type.is_terminal:
                return
        if not missed and not await redis.exists(stream_key(run_id)):
            # The buffer expired (or never existed): a finished run answers from Postgres.
            terminal = await terminal_from_database(last + 1)
            if terminal is not None:
                yield terminal
                return
        elif not missed and await _already_ended(redis, run_id, last):
            return

        while True:
            item = await subscription.queue.get()
            if isinstance(item, Resync) or item.seq > last + 1:
                batch = await replay(redis, run_id, after=last)
            elif item.seq <= last:
                if item.type.is_terminal:
                    return  # the client already had everything
                continue
            else:
                batch = [item]
            for event in batch:
                yield event
                last = event.seq
                if event.type.is_terminal:
                    return


async def _already_ended(redis: Redis, run_id: str, last: int) -> bool:
    newest = await redis.xrevrange(stream_key(run_id), count=1)
    if not newest:
        return False
    event = entry_event(newest[0][1])
    return event.type.is_terminal and event.seq <= last
