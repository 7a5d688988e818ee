"""Fixed-window rate limiter against the test run's real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from redis.asyncio import Redis

from switchboard.kit.ratelimit import RateLimitedError, RateLimiter

PREFIX = "test:ratelimit"


def _key() -> str:
    return f"client-{uuid.uuid4().hex}"


async def test_hits_within_limit_pass(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = _key()
    for _ in range(3):
        assert await limiter.hit(key, limit=3, window_seconds=60) is None


async def test_hit_over_limit_returns_retry_after(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = _key()
    for _ in range(2):
        assert await limiter.hit(key, limit=2, window_seconds=30) is None
    retry = await limiter.hit(key, limit=2, window_seconds=30)
    assert retry is not None
    assert 1 <= retry <= 30


async def test_keys_are_independent(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    first, second = _key(), _key()
    assert await limiter.hit(first, limit=1, window_seconds=30) is None
    assert await limiter.hit(first, limit=1, window_seconds=30) is not None
    assert await limiter.hit(second, limit=1, window_seconds=30) is None


async def test_window_expiry_resets_the_count(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = _key()
    assert await limiter.hit(key, limit=1, window_seconds=1) is None
    assert await limiter.hit(key, limit=1, window_seconds=1) == 1
    await asyncio.sleep(1.1)
    assert await limiter.hit(key, limit=1, window_seconds=1) is None


async def test_concurrent_hits_are_counted_exactly(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = _key()
    results = await asyncio.gather(
        *(limiter.hit(key, limit=7, window_seconds=30) for _ in range(20))
    )
    assert sum(result is None for result in results) == 7


async def test_check_raises_429_with_retry_after(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = _key()
    await limiter.check(key, limit=1, window_seconds=20)
    with pytest.raises(RateLimitedError) as caught:
        await limiter.check(key, limit=1, window_seconds=20)
    error = caught.value
    assert error.status == 429
    assert error.code == "rate_limited"
    assert 1 <= int(error.headers["Retry-After"]) <= 20
    assert error.retry_after == int(error.headers["Retry-After"])


async def test_raw_key_never_reaches_redis(redis: Redis) -> None:
    limiter = RateLimiter(redis, prefix=PREFIX)
    key = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"
    await limiter.hit(key, limit=5, window_seconds=30)
    digest = hashlib.sha256(key.encode()).hexdigest()
    keys = [k async for k in redis.scan_iter(match=f"{PREFIX}:*", count=1000)]
    assert f"{PREFIX}:{digest}".encode() in keys
    assert not [k for k in keys if key.encode() in k]
    assert 0 < await redis.ttl(f"{PREFIX}:{digest}") <= 30
