"""Readiness checks of the services every process depends on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.kit.broker import check_amqp
from switchboard.kit.resources import Resources


class CheckResult(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class Readiness(BaseModel):
    status: str
    checks: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def _timed(probe: Callable[[], Awaitable[Any]], limit: float) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            await probe()
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        error = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return CheckResult(ok=False, latency_ms=_elapsed_ms(started), error=error)
    return CheckResult(ok=True, latency_ms=_elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _redis(client: Redis) -> None:
    await client.ping()


def _broker(resources: Resources, limit: float) -> Callable[[], Awaitable[Any]]:
    if resources.broker_redis is not None:
        return partial(_redis, resources.broker_redis)
    # RabbitMQ: a connection opened and closed, on a thread (py-amqp blocks), each step
    # bounded by the check's own limit so the thread ends soon after a timeout.
    return partial(
        asyncio.to_thread, check_amqp, str(resources.settings.celery.broker_url), timeout=limit
    )


async def check_readiness(resources: Resources) -> Readiness:
    timeout = resources.settings.health.check_timeout_seconds
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(
        _timed(lambda: _postgres(resources.engine), timeout),
        _timed(lambda: _redis(resources.redis), timeout),
        _timed(_broker(resources, timeout), timeout),
    )
    checks = dict(zip(names, results, strict=True))
    status = "ok" if all(result.ok for result in results) else "error"
    return Readiness(status=status, checks=checks)
