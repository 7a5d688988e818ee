"""Following a run: replay what was missed, then live events, each once and in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis

from switchboard.runs.emitter import REDIS_DOWN
from switchboard.runs.errors import EventsLostError
from switchboard.runs.events import RunEvent, entry_event, replay, stream_key
from switchboard.runs.hub import RESYNC, EventHub, Resync

# Looks the run up in Postgres: its terminal event if it has finished, else None.
TerminalLookup = Callable[[int], Awaitable[RunEvent | None]]


class StreamFailedError(Exception):
    """Following the run failed for a reason other than lost events: Redis or Postgres
    refused a command (other than by being out of reach, which the stream waits out), or the
    buffer held an entry that does not decode. The cause is chained; the message is for the
    client."""

    code = "stream_failed"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            "The stream failed; reconnect with Last-Event-ID to resume it, or read the run"
            " for its outcome."
        )
        self.run_id = run_id


async def follow_batches(
    run_id: str,
    *,
    after: int,
    hub: EventHub,
    redis: Redis,
    terminal_from_database: TerminalLookup,
    resync_seconds: float = 15.0,
) -> AsyncIterator[list[RunEvent]]:
    """Events of ``run_id`` numbered above ``after``, ending with the terminal one, in batches
    of whatever has arrived by the time the reader asks (so a busy stream is written in fewer,
    larger pieces).

    The subscription is taken before the buffer is read, so an event published in between
    arrives twice at worst, and the duplicate is dropped by its sequence number. Pub/sub
    delivers at most once, so a stream that hears nothing for ``resync_seconds`` reads the
    buffer again. Raises ``EventsLostError`` when the buffer no longer holds the next event,
    and ``StreamFailedError`` for any other failure on the way.
    """
    try:
        async with hub.subscribe(run_id, quiet_seconds=resync_seconds) as subscription:
            last = after
            items: list[list[RunEvent] | Resync] = [RESYNC]
            while True:
                out: list[RunEvent] = []
                ended, lost = False, None
                for item in items:
                    if isinstance(item, Resync) or item[0].seq > last + 1:
                        batch = await _catch_up(redis, run_id, last, terminal_from_database)
                    else:
                        batch = item
                    try:
                        last, ended = _take(run_id, batch, last, out)
                    except EventsLostError as exc:
                        lost = exc
                    if ended or lost:
                        break
                if out:
                    yield out  # what came before a gap still goes out
                if lost:
                    raise lost
                if ended:
                    return
                items = await subscription.take()
    except EventsLostError:
        raise
    except Exception as exc:
        raise StreamFailedError(run_id) from exc


def _take(
    run_id: str, batch: list[RunEvent] | None, last: int, out: list[RunEvent]
) -> tuple[int, bool]:
    """Appends to ``out`` the events of ``batch`` that come after ``last``, in order; returns
    the new last number and whether the stream has ended (``batch`` None: it already had)."""
    if batch is None:
        return last, True
    for event in batch:
        if event.seq <= last:
            if event.type.is_terminal:
                return last, True
            continue
        if event.seq != last + 1:
            raise EventsLostError(run_id, last)
        out.append(event)
        last = event.seq
        if event.type.is_terminal:
            return last, True
    return last, False


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
