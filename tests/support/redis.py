"""The test run's own Redis database index, flushed before and after the session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from switchboard.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _flushed_redis(settings: Settings) -> Iterator[None]:
    client = redis_sync.Redis.from_url(str(settings.redis.url))
    client.flushdb()
    yield
    client.flushdb()
    client.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(str(settings.redis.url))
    yield client
    await client.aclose()
