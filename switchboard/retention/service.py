"""The scheduled clean-up: every kind of data that outlived its window, in bounded batches.

Each target is a query for the ids of rows past their window. Rows go in batches of
``RETENTION_BATCH_SIZE``, each batch its own short transaction (rows locked by someone else
are skipped and left for the next run), at most ``RETENTION_MAX_BATCHES`` per target per run,
so no run holds a lock for long or grows without bound. A second run finds nothing more to do.
Deleting a conversation takes its messages and runs with it (foreign keys cascade).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from switchboard.kit.db import SessionMaker
from switchboard.models import (
    Conversation,
    PasswordResetToken,
    RefreshToken,
    StripeEvent,
    TaskFailure,
    UserLoginEvent,
    WebhookEvent,
)
from switchboard.retention.metrics import DELETED, LAST_RUN
from switchboard.retention.repository import (
    RetentionRepository,
    ended_refresh_tokens,
    expired_reset_tokens,
    idle_conversations,
    old_login_events,
    old_task_failures,
    old_webhook_events,
    processed_stripe_events,
)
from switchboard.retention.settings import RetentionSettings
from switchboard.runs.events import stream_key

log = structlog.get_logger("switchboard.retention")

EVENT_BUFFERS = "run_event_buffers"


@dataclass(frozen=True)
class Target:
    name: str
    key: InstrumentedAttribute[Any]
    expired: Callable[[datetime, RetentionSettings], Select[Any]]


TARGETS = (
    Target("conversations", Conversation.id, idle_conversations),
    Target("refresh_tokens", RefreshToken.id, ended_refresh_tokens),
    Target("password_reset_tokens", PasswordResetToken.id, expired_reset_tokens),
    Target("login_events", UserLoginEvent.id, old_login_events),
    Target("stripe_events", StripeEvent.id, processed_stripe_events),
    Target("task_failures", TaskFailure.id, old_task_failures),
    Target("webhook_events", WebhookEvent.id, old_webhook_events),
)


@dataclass
class RetentionReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def run_retention(
    sessionmaker: SessionMaker,
    redis: Redis,
    settings: RetentionSettings,
    *,
    buffer_ttl_seconds: int,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionReport:
    """Deletes (or, with ``dry_run``, counts) everything past its window."""
    moment = now or datetime.now(UTC)
    report = RetentionReport(dry_run=dry_run)
    for target in TARGETS:
        query = target.expired(moment, settings)
        if dry_run:
            report.counts[target.name] = await _count(sessionmaker, query)
        else:
            report.counts[target.name] = await delete_in_batches(
                sessionmaker, target, query, settings.batch_size, settings.max_batches
            )
    report.counts[EVENT_BUFFERS] = await sweep_event_buffers(
        sessionmaker, redis, ttl_seconds=buffer_ttl_seconds, dry_run=dry_run
    )
    if not dry_run:
        for name, count in report.counts.items():
            DELETED.labels(name).inc(count)
        LAST_RUN.set_to_current_time()
    log.info("retention.ran", dry_run=dry_run, **report.counts)
    return report


async def _count(sessionmaker: SessionMaker, query: Select[Any]) -> int:
    async with sessionmaker() as session:
        return await RetentionRepository(session).count(query)


async def delete_in_batches(
    sessionmaker: SessionMaker,
    target: Target,
    query: Select[Any],
    batch_size: int,
    max_batches: int,
) -> int:
    """Deletes the rows ``query`` selects, ``batch_size`` per transaction."""
    deleted = 0
    for _ in range(max_batches):
        async with sessionmaker() as session, session.begin():
            count = await RetentionRepository(session).delete_batch(target.key, query, batch_size)
        deleted += count
        if count < batch_size:
            break
    return deleted


async def sweep_event_buffers(
    sessionmaker: SessionMaker, redis: Redis, *, ttl_seconds: int, dry_run: bool
) -> int:
    """Run event buffers whose run no longer exists are deleted; any buffer left without an
    expiry (a crash between writing and expiring) gets one. Returns buffers deleted."""
    deleted = 0
    pending: list[tuple[bytes, str]] = []

    async def settle() -> int:
        ids = []
        for _, run_id in pending:
            try:
                ids.append(uuid.UUID(run_id))
            except ValueError:
                continue
        async with sessionmaker() as session:
            alive = {str(i) for i in await RetentionRepository(session).existing_runs(ids)}
        gone = [key for key, run_id in pending if run_id not in alive]
        if gone and not dry_run:
            await redis.delete(*gone)
        pending.clear()
        return len(gone)

    async for key in redis.scan_iter(match=stream_key("*"), count=500, _type="stream"):
        run_id = key.decode().removeprefix("run:").removesuffix(":events")
        if not dry_run and await redis.ttl(key) == -1:
            await redis.expire(key, ttl_seconds)
        pending.append((key, run_id))
        if len(pending) >= 500:
            deleted += await settle()
    if pending:
        deleted += await settle()
    return deleted
