"""Async Redis clients, one pool per process and event loop."""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.settings import RedisSettings


def create_redis(url: str, settings: RedisSettings) -> Redis:
    return Redis.from_url(
        url,
        max_connections=settings.max_connections,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.socket_timeout_seconds,
        health_check_interval=30,
        decode_responses=False,
    )
