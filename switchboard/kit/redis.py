"""Async Redis clients, one bounded pool per process and event loop."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from switchboard.kit.tracing import instrument_redis
from switchboard.settings import RedisSettings


def create_redis(url: str, settings: RedisSettings) -> Redis:
    # A blocking pool makes a burst wait for a free connection instead of failing: a worker
    # running hundreds of agent runs shares ``max_connections`` among them.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_seconds,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.socket_timeout_seconds,
        health_check_interval=30,
    )
    # from_pool: the client owns the pool, so closing the client closes its connections.
    client = Redis.from_pool(pool)
    instrument_redis(client)
    return client
