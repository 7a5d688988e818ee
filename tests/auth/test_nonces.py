from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from switchboard.auth.errors import InvalidTokenError
from switchboard.auth.nonces import (
    KEY_PREFIX,
    MemoryReplayCache,
    RedisReplayCache,
    create_replay_cache,
)
from switchboard.auth.settings import NonceBackend
from switchboard.auth.tokens import spend_single_use


async def test_redis_cache_accepts_a_value_once_with_a_bounded_ttl(redis: Redis) -> None:
    cache = RedisReplayCache(redis)

    assert await cache.first_use("sa", "nonce-1", 3600) is True
    assert await cache.first_use("sa", "nonce-1", 3600) is False
    assert await cache.first_use("other", "nonce-1", 60) is True

    keys = [key.decode() async for key in redis.scan_iter(match=f"{KEY_PREFIX}sa:*")]
    assert len(keys) == 1
    assert "nonce-1" not in keys[0]
    assert 0 < await redis.ttl(keys[0]) <= 300


async def test_memory_cache_forgets_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MemoryReplayCache()
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    assert await cache.first_use("sa", "n", 10)
    assert not await cache.first_use("sa", "n", 10)
    clock[0] += 11
    assert await cache.first_use("sa", "n", 10)


async def test_single_use_token_is_accepted_once(redis: Redis) -> None:
    cache = RedisReplayCache(redis)
    now = time.time()
    claims = {"jti": f"one-time-{now}", "iat": int(now), "exp": int(now) + 120}

    await spend_single_use(cache, claims, now)
    with pytest.raises(InvalidTokenError) as replayed:
        await spend_single_use(cache, claims, now)
    assert replayed.value.reason == "replayed"


async def test_single_use_needs_a_life_within_the_cache_window(redis: Redis) -> None:
    now = time.time()
    claims = {"jti": "long", "iat": int(now), "exp": int(now) + 3600}
    with pytest.raises(InvalidTokenError) as refused:
        await spend_single_use(RedisReplayCache(redis), claims, now)
    assert refused.value.reason == "single_use_too_long"


async def test_factory_picks_the_configured_backend(redis: Redis) -> None:
    assert isinstance(create_replay_cache(NonceBackend.memory, redis), MemoryReplayCache)
    assert isinstance(create_replay_cache(NonceBackend.redis, redis), RedisReplayCache)
