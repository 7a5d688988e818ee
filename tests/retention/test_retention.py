"""The scheduled clean-up against real Postgres and Redis: data on both sides of each window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker
from switchboard.models import (
    Conversation,
    Message,
    PasswordResetToken,
    RefreshToken,
    Run,
    StripeEvent,
    TaskFailure,
    UserLoginEvent,
)
from switchboard.retention.service import run_retention
from switchboard.retention.settings import RetentionSettings
from switchboard.runs.events import stream_key
from tests.retention.seed import Seeded, seed_tenant

SETTINGS = RetentionSettings(
    conversation_days=365,
    login_event_days=90,
    stripe_event_days=90,
    refresh_token_grace_days=7,
    reset_token_grace_days=1,
    task_failure_days=30,
)
TTL = 3600


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def ahead(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


class Marked:
    """Rows made by this test, old and young, by kind."""

    def __init__(self) -> None:
        self.old: dict[str, list[object]] = {}
        self.young: dict[str, list[object]] = {}


async def seed_both_sides(session: AsyncSession, seeded: Seeded) -> Marked:
    marks = Marked()
    marker = uuid.uuid4().hex
    events = {
        "old": [UserLoginEvent(email_hash=marker, ip_hash="i", result="failure")],
        "young": [UserLoginEvent(email_hash=marker, ip_hash="i", result="failure")],
    }
    session.add_all(events["old"] + events["young"])
    await session.flush()
    events["old"][0].created_at = ago(days=91)
    events["young"][0].created_at = ago(days=89)

    def refresh(**values: object) -> RefreshToken:
        defaults: dict[str, object] = {
            "family_id": uuid.uuid4(),
            "selector": uuid.uuid4().hex,
            "secret_hash": "h",
            "user_id": seeded.user_id,
            "tenant_id": seeded.tenant_id,
            "issued_at": ago(days=40),
            "expires_at": ago(days=39),
            "family_expires_at": ahead(days=30),
        }
        return RefreshToken(**{**defaults, **values})

    tokens_old = [refresh(family_expires_at=ago(days=8)), refresh(revoked_at=ago(days=8))]
    tokens_young = [refresh(family_expires_at=ago(days=6)), refresh(revoked_at=ago(days=1))]
    resets_old = [
        PasswordResetToken(
            user_id=seeded.user_id,
            selector=uuid.uuid4().hex,
            secret_hash="h",
            expires_at=ago(days=2),
        )
    ]
    resets_young = [
        PasswordResetToken(
            user_id=seeded.user_id,
            selector=uuid.uuid4().hex,
            secret_hash="h",
            expires_at=ahead(hours=1),
        )
    ]

    def stripe_event(processed_at: datetime | None) -> StripeEvent:
        return StripeEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type="invoice.paid",
            payload={},
            stripe_created_at=ago(days=200),
            processed_at=processed_at,
        )

    stripe_old = [stripe_event(ago(days=91))]
    stripe_young = [stripe_event(ago(days=1)), stripe_event(None)]  # unprocessed stays

    def failure(days: float) -> TaskFailure:
        return TaskFailure(
            task_id=marker,
            task_name="t",
            call_args=[],
            call_kwargs={},
            exception_type="E",
            message="m",
            traceback="",
            failed_at=ago(days=days),
        )

    failures_old, failures_young = [failure(31)], [failure(29)]
    session.add_all(
        tokens_old + tokens_young + resets_old + resets_young + stripe_old + stripe_young
    )
    session.add_all(failures_old + failures_young)
    await session.flush()
    marks.old = {
        "login_events": events["old"],
        "refresh_tokens": tokens_old,
        "password_reset_tokens": resets_old,
        "stripe_events": stripe_old,
        "task_failures": failures_old,
    }
    marks.young = {
        "login_events": events["young"],
        "refresh_tokens": tokens_young,
        "password_reset_tokens": resets_young,
        "stripe_events": stripe_young,
        "task_failures": failures_young,
    }
    return marks


async def exists(session: AsyncSession, row: object) -> bool:
    model = type(row)
    key = getattr(row, "id")  # noqa: B009
    found = await session.scalar(select(func.count()).select_from(model).where(model.id == key))  # type: ignore[attr-defined]
    return bool(found)


async def test_only_data_past_its_window_goes_and_a_second_run_finds_nothing(
    sessionmaker: SessionMaker, redis: Redis
) -> None:
    async with sessionmaker() as session, session.begin():
        short = await seed_tenant(session, retention_days=10, idle=timedelta(days=11))
        short_young = await seed_tenant(session, retention_days=10, idle=timedelta(days=9))
        default_old = await seed_tenant(session, idle=timedelta(days=366))
        default_young = await seed_tenant(session, idle=timedelta(days=300))
        marks = await seed_both_sides(session, default_young)
    gone_run = str(uuid.uuid4())  # its run no longer exists
    await redis.xadd(stream_key(gone_run), {"seq": "1"})
    await redis.xadd(stream_key(str(short_young.run_id)), {"seq": "1"})  # no expiry yet

    first = await run_retention(sessionmaker, redis, SETTINGS, buffer_ttl_seconds=TTL)
    second = await run_retention(sessionmaker, redis, SETTINGS, buffer_ttl_seconds=TTL)

    async with sessionmaker() as session:
        for seeded, kept in (
            (short, False),
            (short_young, True),
            (default_old, False),
            (default_young, True),
        ):
            conversation = await session.get(Conversation, seeded.conversation_id)
            run = await session.get(Run, seeded.run_id)
            messages = await session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == seeded.conversation_id)
            )
            assert (conversation is not None, run is not None, messages == 1) == (kept,) * 3
        for kind, rows in marks.old.items():
            for row in rows:
                assert not await exists(session, row), kind
        for kind, rows in marks.young.items():
            for row in rows:
                assert await exists(session, row), kind
    assert first.counts["conversations"] >= 2
    assert first.counts["run_event_buffers"] >= 1
    assert not await redis.exists(stream_key(gone_run))
    assert 0 < await redis.ttl(stream_key(str(short_young.run_id))) <= TTL
    assert second.total == 0, second.counts


async def test_batches_bound_each_run_and_dry_run_deletes_nothing(
    sessionmaker: SessionMaker, redis: Redis
) -> None:
    marker = uuid.uuid4().hex
    async with sessionmaker() as session, session.begin():
        rows = [UserLoginEvent(email_hash=marker, ip_hash="i", result="ok") for _ in range(5)]
        session.add_all(rows)
        await session.flush()
        for row in rows:
            row.created_at = ago(days=100)
    small = SETTINGS.model_copy(update={"batch_size": 2, "max_batches": 1})

    async def left() -> int:
        async with sessionmaker() as session:
            query = select(func.count()).where(UserLoginEvent.email_hash == marker)
            return int(await session.scalar(query) or 0)

    dry = await run_retention(sessionmaker, redis, small, buffer_ttl_seconds=TTL, dry_run=True)
    assert dry.counts["login_events"] >= 5
    assert await left() == 5
    remaining = []
    for _ in range(4):
        report = await run_retention(sessionmaker, redis, small, buffer_ttl_seconds=TTL)
        assert report.counts["login_events"] <= 2  # one batch of two per run, no more
        remaining.append(await left())
    assert remaining == [3, 1, 0, 0]
