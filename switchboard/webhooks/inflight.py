"""Attempts in flight per endpoint, bounded across every webhooks worker.

A receiver that hangs holds at most ``WEBHOOKS_ENDPOINT_CONCURRENCY`` attempts at a time; the
rest of its deliveries wait on the broker with a growing countdown instead of in worker
threads, so other tenants' deliveries keep flowing. A slot is a member of a sorted set scored
by when it lapses, so a worker killed mid-attempt cannot keep its slot.
"""

from __future__ import annotations

import time
import uuid

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("switchboard.webhooks")

_TAKE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""


def _key(endpoint_id: uuid.UUID) -> str:
    return f"switchboard:webhooks:inflight:{endpoint_id}"


class EndpointSlots:
    def __init__(self, redis: Redis, *, limit: int, lease_seconds: float) -> None:
        self.redis = redis
        self.limit = limit
        self.lease_ms = int(lease_seconds * 1000)
        self._take = redis.register_script(_TAKE_SCRIPT)

    async def take(self, endpoint_id: uuid.UUID) -> str | None:
        """A slot's token, or None when the endpoint has all its attempts in flight. Should
        Redis be out of reach, the attempt goes ahead unbounded rather than not at all."""
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        try:
            taken = await self._take(
                keys=[_key(endpoint_id)], args=[now_ms, now_ms + self.lease_ms, self.limit, token]
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("webhooks.slots_unavailable", error=type(exc).__name__)
            return token
        return token if taken else None

    async def give_back(self, endpoint_id: uuid.UUID, token: str) -> None:
        try:
            await self.redis.zrem(_key(endpoint_id), token)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("webhooks.slot_not_returned", error=type(exc).__name__)
