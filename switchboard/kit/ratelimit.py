"""Fixed-window rate limiting in Redis, safe across processes.

Each limited key is one Redis counter that expires with its window. The increment and the
expiry happen in one Lua call, so concurrent hits from any number of processes are counted
exactly and a counter can never be left without an expiry. Client input (an IP, an account
name) is hashed before it becomes part of a Redis key.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from switchboard.kit.errors import AppError

# KEYS[1]: the counter. ARGV[1]: window in seconds, ARGV[2]: limit.
# Returns 0 while within the limit, else the whole seconds (>= 1) until the window resets.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
if count <= tonumber(ARGV[2]) then
    return 0
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl <= 0 then
    return tonumber(ARGV[1])
end
return math.max(1, math.ceil(pttl / 1000))
"""


def hash_key(value: str) -> str:
    """The sha256 hex digest of ``value``, used in place of client input in Redis keys."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def retry_after_headers(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds)))}


class RateLimitedError(AppError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(
        self, retry_after: int, message: str = "Too many requests. Try again later."
    ) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, headers=retry_after_headers(self.retry_after))


class RateLimiter:
    """Counts hits per key in fixed windows; keys are ``<prefix>:<sha256 hex of key>``."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._hit = redis.register_script(_HIT_SCRIPT)

    def redis_key(self, key: str) -> str:
        return f"{self._prefix}:{hash_key(key)}"

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> int | None:
        """Count one hit; None while within ``limit``, else seconds until the window resets."""
        if limit < 0 or window_seconds < 1:
            raise ValueError("limit must be >= 0 and window_seconds >= 1")
        result = await self._hit(keys=[self.redis_key(key)], args=[window_seconds, limit])
        retry = int(result)
        return retry if retry > 0 else None

    async def check(self, key: str, *, limit: int, window_seconds: int) -> None:
        """Count one hit and raise :class:`RateLimitedError` when over ``limit``."""
        retry = await self.hit(key, limit=limit, window_seconds=window_seconds)
        if retry is not None:
            raise RateLimitedError(retry)
