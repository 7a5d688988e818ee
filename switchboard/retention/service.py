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
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from switchboard.kit.db import SessionMaker
from switchboard.models import (
    Conversation,
    PasswordResetToken,
    RefreshToken,
    Run,
    StripeEvent,
    TaskFailure,
    Tenant,
    UserLoginEvent,
)
from switchboard.retention.metrics import DELETED, LAST_RUN
from switchboard.retention.settings import RetentionSettings
from switchboard.runs.events import stream_key

log = structlog.get_logger("switchboard.retention")

EVENT_BUFFERS = "run_event_buffers"


@dataclass(frozen=True)
class Target:
    name: str
    key: InstrumentedAttribute[Any]
    expired: Callable[[datetime, RetentionSettings], Select[Any]]


def _idle_conversations(now: datetime, settings: RetentionSettings) -> Select[Any]:
    days = func.coalesce(Tenant.retention_days, settings.conversation_days)
    return (
        select(Conversation.id)
        .join(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Conversation.updated_at < now - func.make_interval(0, 0, 0, days))
    )


def _ended_refresh_tokens(now: datetime, settings: RetentionSettings) -> Select[Any]:
    # Spent tokens are kept while their family lives: presenting one again is how reuse is
    # detected. Once the family ended or was revoked, nothing needs them.
    cutoff = now - timedelta(days=settings.refresh_token_grace_days)
    return select(RefreshToken.id).where(
        or_(RefreshToken.family_expires_at < cutoff, RefreshToken.revoked_at < cutoff)
    )


def _expired_reset_tokens(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.reset_token_grace_days)
    return select(PasswordResetToken.id).where(PasswordResetToken.expires_at < cutoff)


def _old_login_events(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.login_event_days)
    return select(UserLoginEvent.id).where(UserLoginEvent.created_at < cutoff)


def _processed_stripe_events(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.stripe_event_days)
    return select(StripeEvent.id).where(StripeEvent.processed_at < cutoff)


def _old_task_failures(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.task_failure_days)
    return select(TaskFailure.id).where(TaskFailure.failed_at < cutoff)


TARGETS = (
    Target("conversations", Conversation.id, _idle_conversations),
    Target("refresh_tokens", RefreshToken.id, _ended_refresh_tokens),
    Target("password_reset_tokens", PasswordResetToken.id, _expired_reset_tokens),
    Target("login_events", UserLoginEvent.id, _old_login_events),
    Target("stripe_events", StripeEvent.id, _processed_stripe_events),
    Target("task_failures", TaskFailure.id, _old_task_failures),
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
        return int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)


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
        batch = (
            query.order_by(target.key)
            .limit(batch_size)
            .with_for_update(skip_locked=True, of=target.key.class_)
        )
        async with sessionmaker() as session, session.begin():
            result = await session.execute(
                delete(target.key.class_).where(target.key.in_(batch.scalar_subquery()))
            )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
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
            alive = {str(i) for i in await session.scalars(select(Run.id).where(Run.id.in_(ids)))}
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
