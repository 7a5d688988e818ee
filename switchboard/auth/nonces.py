"""The replay cache: single-use values (nonces, one-time token ids) are accepted once."""

from __future__ import annotations

import hashlib
import time
from typing import Protocol

from redis.asyncio import Redis

from switchboard.auth.settings import NonceBackend

# A single-use value is remembered this long at most; anything that must stay single-use for
# longer has to expire sooner.
MAX_TTL_SECONDS = 300
KEY_PREFIX = "auth:nonce:"


class ReplayCache(Protocol):
    async def first_use(self, namespace: str, value: str, ttl_seconds: int) -> bool:
        """True the first time ``value`` is seen in ``namespace`` within the TTL."""
        ...


def _key(namespace: str, value: str) -> str:
    # Hashed so arbitrary client input makes bounded, opaque keys.
    return KEY_PREFIX + namespace + ":" + hashlib.sha256(value.encode()).hexdigest()


def _ttl(ttl_seconds: int) -> int:
    return max(1, min(ttl_seconds, MAX_TTL_SECONDS))


class RedisReplayCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def first_use(self, namespace: str, value: str, ttl_seconds: int) -> bool:
        stored = await self._redis.set(_key(namespace, value), b"1", nx=True, ex=_ttl(ttl_seconds))
        return bool(stored)


class MemoryReplayCache:
    """One process only: for development without Redis. Settings refuse it elsewhere."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    async def first_use(self, namespace: str, value: str, ttl_seconds: int) -> bool:
        now = time.monotonic()
        self._seen = {key: until for key, until in self._seen.items() if until > now}
        key = _key(namespace, value)
        if key in self._seen:
            return False
        self._seen[key] = now + _ttl(ttl_seconds)
        return True


def create_replay_cache(backend: NonceBackend, redis: Redis) -> ReplayCache:
    if backend is NonceBackend.memory:
        return MemoryReplayCache()
    return RedisReplayCache(redis)
