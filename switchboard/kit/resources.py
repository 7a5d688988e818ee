"""The long-lived clients of one process: database engine and Redis pools.

The API opens them in its lifespan, a worker process in its own event loop after fork; both
close them on shutdown. Nothing here is created at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.kit.db import SessionMaker, create_engine, create_sessionmaker
from switchboard.kit.redis import create_redis
from switchboard.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: SessionMaker
    redis: Redis
    broker_redis: Redis | None
    """The broker's Redis, for readiness; None when the broker is RabbitMQ."""


@asynccontextmanager
async def open_resources(settings: Settings, *, application_name: str) -> AsyncIterator[Resources]:
    engine = create_engine(settings.database, application_name=application_name)
    redis = create_redis(str(settings.redis.url), settings.redis)
    broker_redis = None
    if not settings.celery.amqp_broker:
        broker_redis = create_redis(str(settings.celery.broker_url), settings.redis)
    try:
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            broker_redis=broker_redis,
        )
    finally:
        if broker_redis is not None:
            await broker_redis.aclose()
        await redis.aclose()
        await engine.dispose()
