"""Open streams, per user and per stream ticket, across API processes.

A stream holds a slot in a sorted set scored by a deadline that the serving API process renews;
a process that dies stops renewing and its slots lapse. A stream opened with a ticket holds a
second slot the same way, in its ticket's set. Redis's clock (``TIME``) is the only clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from switchboard.runs.admission import or_unlimited, retry_after
from switchboard.runs.errors import TicketStreamsExceededError, TooManyStreamsError
from switchboard.runs.metrics import LIMIT_REJECTIONS
from switchboard.runs.settings import RunsSettings

log = structlog.get_logger("switchboard.runs")


def streams_key(user_id: uuid.UUID) -> str:
    """The user's open streams: stream id -> deadline (ms, Redis clock)."""
    return f"limits:user:{user_id}:streams"


def ticket_streams_key(ticket_id: str) -> str:
    """The streams opened with one stream ticket (its ``jti``): stream id -> deadline."""
    return f"limits:ticket:{ticket_id}:streams"


# KEYS: streams. ARGV: stream id, limit (-1: unlimited), slot ms. Returns {1, open} or {0, open}.
_OPEN_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and open >= limit then return {0, open} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, open + 1}
"""

# KEYS: one streams key per open stream. ARGV: slot ms, then the stream ids in KEYS' order.
_RENEW_STREAMS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""


@dataclass(frozen=True)
class StreamSlot:
    key: str
    stream_id: str


class StreamSlots:
    """Open streams per user, across API processes. This process renews the deadlines of
    the streams it serves every third of ``stream_slot_seconds``, all in one call."""

    def __init__(self, redis: Redis, settings: RunsSettings) -> None:
        self.settings = settings
        self._redis = redis
        self._open_script = redis.register_script(_OPEN_STREAM)
        self._renew = redis.register_script(_RENEW_STREAMS)
        self._serving: dict[str, StreamSlot] = {}
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, user_id: uuid.UUID, limit: int | None, plan_code: str) -> StreamSlot:
        """A slot for a new stream of the user's, or 429 ``runs.too_many_streams``."""
        slot = await self._take(streams_key(user_id), limit)
        if slot is None:
            LIMIT_REJECTIONS.labels("open_streams_per_user", plan_code).inc()
            raise TooManyStreamsError(
                f"The plan allows {limit} open streams per user; close one first.",
                headers=retry_after(self.settings.concurrency_retry_seconds),
            )
        return slot

    async def take_for_ticket(self, ticket_id: str) -> StreamSlot:
        """A slot among the streams of one ticket, or 429 ``runs.ticket_streams_exceeded``:
        a ticket that leaked (a log, a shared link) cannot fan out to many streams."""
        limit = self.settings.streams_per_ticket
        slot = await self._take(ticket_streams_key(ticket_id), limit)
        if slot is None:
            raise TicketStreamsExceededError(
                f"A stream ticket holds at most {limit} streams open at once; close one, or"
                " ask for a fresh ticket.",
                headers=retry_after(self.settings.concurrency_retry_seconds),
            )
        return slot

    async def _take(self, key: str, limit: int | None) -> StreamSlot | None:
        slot = StreamSlot(key, uuid.uuid4().hex)
        ttl = self.settings.stream_slot_seconds * 1000
        taken, _ = await self._open_script(
            keys=[key], args=[slot.stream_id, or_unlimited(limit), ttl]
        )
        return slot if taken else None

    def serving(self, slot: StreamSlot) -> None:
        """The stream is on the wire: renew its slot while it lasts."""
        self._serving[slot.stream_id] = slot
        if self._renewer is None or self._renewer.done():
            # Serves every stream of the process: not part of its first request's trace or log.
            self._renewer = asyncio.create_task(
                self._renew_forever(), context=contextvars.Context()
            )

    async def give_back(self, slot: StreamSlot) -> None:
        self._serving.pop(slot.stream_id, None)
        await self._redis.zrem(slot.key, slot.stream_id)

    async def give_back_all(self, held: Sequence[StreamSlot]) -> None:
        """Gives each slot back, whatever happens to the others."""
        for slot in held:
            # Redis away: the slot lapses by itself, unrenewed, within stream_slot_seconds.
            with contextlib.suppress(Exception):
                await self.give_back(slot)

    async def _renew_forever(self) -> None:
        every = self.settings.stream_slot_seconds / 3
        while True:
            await asyncio.sleep(every)
            slots = list(self._serving.values())
            if not slots:
                continue
            try:
                await self._renew(
                    keys=[slot.key for slot in slots],
                    args=[
                        self.settings.stream_slot_seconds * 1000,
                        *(slot.stream_id for slot in slots),
                    ],
                )
            except Exception as exc:  # Redis away: try again next time; slots outlive a blip
                log.warning("runs.stream_slots_not_renewed", error=type(exc).__name__)

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
