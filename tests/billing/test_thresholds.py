"""80% and 100% of a plan's monthly tokens: recorded once per tenant and month, announced once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from pydantic import PostgresDsn
from sqlalchemy import delete, select, text

from switchboard.billing.limits import set_plan_limits
from switchboard.billing.periods import period_of
from switchboard.billing.service import BillingService
from switchboard.billing.thresholds import record_thresholds
from switchboard.kit.db import SessionMaker, create_engine, create_sessionmaker
from switchboard.kit.logging import configure_logging
from switchboard.models import Tenant, UsageThreshold
from switchboard.settings import Settings
from tests.billing.conftest import new_tenant, record_usage
from tests.billing.test_limits import drop_plan, scratch_plan, subscribe
from tests.support.waiting import eventually

DECEMBER = datetime(2026, 12, 15, 12, tzinfo=UTC)
JANUARY = datetime(2027, 1, 3, 8, tzinfo=UTC)


async def use(sessionmaker: SessionMaker, tenant_id: uuid.UUID, tokens: int, at: datetime) -> None:
    """The usage record of one run of ``tokens`` tokens that ended ``at``."""
    async with sessionmaker() as session, session.begin():
        await record_usage(
            session,
            tenant_id=tenant_id,
            run_id=uuid.uuid4(),
            input_tokens=tokens // 2,
            output_tokens=tokens - tokens // 2,
            at=at,
        )


async def recorded(
    sessionmaker: SessionMaker, tenant_id: uuid.UUID
) -> list[tuple[datetime, int, int, int]]:
    """``(period_start, percent, tokens, limit_tokens)`` of the tenant's thresholds."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(
                UsageThreshold.period_start,
                UsageThreshold.percent,
                UsageThreshold.tokens,
                UsageThreshold.limit_tokens,
            )
            .where(UsageThreshold.tenant_id == tenant_id)
            .order_by(UsageThreshold.period_start, UsageThreshold.percent)
        )
        return [(start, percent, tokens, limit) for start, percent, tokens, limit in rows]


@pytest.fixture
def logs(settings: Settings, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Billing's log lines, through the logging set-up every process uses (the app's, here)."""
    configure_logging(settings.log, settings.environment, service="tests")
    caplog.set_level(logging.INFO, logger="switchboard.billing")
    return caplog


def events(logs: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [r.msg for r in logs.records if isinstance(r.msg, dict) and r.msg["event"] == name]


def counted(percent: int) -> float:
    value = REGISTRY.get_sample_value("billing_usage_thresholds_total", {"percent": str(percent)})
    return value or 0.0


async def test_80_then_100_percent_are_each_recorded_once(
    sessionmaker: SessionMaker, logs: pytest.LogCaptureFixture
) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=1_000)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    before = counted(80), counted(100)

    steps = []
    for tokens in (500, 299, 1, 100, 99, 1, 400):
        await use(sessionmaker, tenant, tokens, DECEMBER)
        reached = await record_thresholds(sessionmaker, tenant, DECEMBER)
        steps.append([threshold.percent for threshold in reached])

    # 500, 799, 800 (80%), 900, 999, 1000 (100%), 1400.
    assert steps == [[], [], [80], [], [], [100], []]
    assert await record_thresholds(sessionmaker, tenant, DECEMBER) == []
    december = period_of(DECEMBER)[0]
    assert await recorded(sessionmaker, tenant) == [
        (december, 80, 800, 1_000),
        (december, 100, 1_000, 1_000),
    ]
    assert (counted(80), counted(100)) == (before[0] + 1, before[1] + 1)
    assert [
        (e["tenant_id"], e["percent"], e["period"])
        for e in events(logs, "billing.usage_threshold_reached")
    ] == [(str(tenant), 80, "2026-12"), (str(tenant), 100, "2026-12")]


async def test_a_run_past_both_records_both_at_once(sessionmaker: SessionMaker) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=100)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    await use(sessionmaker, tenant, 250, DECEMBER)

    reached = await record_thresholds(sessionmaker, tenant, DECEMBER)

    assert [(t.percent, t.tokens, t.limit_tokens) for t in reached] == [
        (80, 250, 100),
        (100, 250, 100),
    ]
    assert all(t.tenant_id == tenant and t.period_start == period_of(DECEMBER)[0] for t in reached)


async def test_a_new_month_records_again(sessionmaker: SessionMaker) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=1_000)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    await use(sessionmaker, tenant, 850, DECEMBER)
    assert [t.percent for t in await record_thresholds(sessionmaker, tenant, DECEMBER)] == [80]

    # January starts from nothing: December's tokens do not count.
    await use(sessionmaker, tenant, 100, JANUARY)
    assert await record_thresholds(sessionmaker, tenant, JANUARY) == []
    await use(sessionmaker, tenant, 700, JANUARY)
    assert [t.percent for t in await record_thresholds(sessionmaker, tenant, JANUARY)] == [80]

    assert [(start, percent) for start, percent, _, _ in await recorded(sessionmaker, tenant)] == [
        (period_of(DECEMBER)[0], 80),
        (period_of(JANUARY)[0], 80),
    ]


async def test_unlimited_tokens_record_nothing(sessionmaker: SessionMaker) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=None)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    await use(sessionmaker, tenant, 2 * 10**9, DECEMBER)

    assert await record_thresholds(sessionmaker, tenant, DECEMBER) == []
    assert await recorded(sessionmaker, tenant) == []


async def test_the_limit_is_that_of_the_plan_the_tenant_is_on(sessionmaker: SessionMaker) -> None:
    """The plan BillingService.tenant_plan names: the live subscription's, else free (an
    ended subscription counts for nothing)."""
    plan = await scratch_plan(sessionmaker, monthly_tokens=None)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan, status="canceled")
    async with sessionmaker() as session:
        on = await BillingService(session).tenant_plan(tenant)
    assert on.plan_code == "free"
    free_tokens = on.limits.monthly_tokens
    assert free_tokens is not None
    await use(sessionmaker, tenant, free_tokens * 80 // 100, DECEMBER)

    reached = await record_thresholds(sessionmaker, tenant, DECEMBER)

    assert [(t.percent, t.limit_tokens) for t in reached] == [(80, free_tokens)]


async def test_a_lower_limit_applies_to_the_next_check(sessionmaker: SessionMaker) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=10_000)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    await use(sessionmaker, tenant, 900, DECEMBER)
    assert await record_thresholds(sessionmaker, tenant, DECEMBER) == []

    async with sessionmaker() as session, session.begin():
        await set_plan_limits(session, plan, {"monthly_tokens": 1_000})

    assert [t.percent for t in await record_thresholds(sessionmaker, tenant, DECEMBER)] == [80]


async def test_concurrent_recorders_record_once(
    committed: SessionMaker, logs: pytest.LogCaptureFixture
) -> None:
    """Eight recorders reach the insert while another one's 80% row is not committed yet: they
    wait for it, then exactly one of them records 100% and none fails."""
    plan = await scratch_plan(committed, monthly_tokens=1_000)
    tenant = await new_tenant(committed)
    try:
        await subscribe(committed, tenant, plan)
        await use(committed, tenant, 1_000, DECEMBER)
        async with committed() as first, first.begin():
            first.add(
                UsageThreshold(
                    tenant_id=tenant,
                    period_start=period_of(DECEMBER)[0],
                    percent=80,
                    tokens=1_000,
                    limit_tokens=1_000,
                )
            )
            await first.flush()
            racing = asyncio.gather(
                *(record_thresholds(committed, tenant, DECEMBER) for _ in range(8))
            )
            await eventually(lambda: blocked(committed, 8))
        results = await racing

        assert sorted(t.percent for reached in results for t in reached) == [100]
        assert [percent for _, percent, _, _ in await recorded(committed, tenant)] == [80, 100]
        assert events(logs, "billing.usage_threshold_failed") == []
        assert len(events(logs, "billing.usage_threshold_reached")) == 1
    finally:
        async with committed() as session, session.begin():
            await session.execute(delete(Tenant).where(Tenant.id == tenant))
        await drop_plan(committed, plan)


async def blocked(sessionmaker: SessionMaker, count: int) -> bool | None:
    """True once ``count`` sessions of this database wait for a lock."""
    async with sessionmaker() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return True if waiting == count else None


async def test_a_failure_is_logged_and_never_raised(
    settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    unreachable = settings.database.model_copy(
        update={
            "url": PostgresDsn(str(settings.database.url).replace(":5432/", ":1/")),
            "connect_timeout_seconds": 1,
        }
    )
    engine = create_engine(unreachable)
    try:
        reached = await record_thresholds(create_sessionmaker(engine), uuid.uuid4(), DECEMBER)
    finally:
        await engine.dispose()

    assert reached == []
    assert len(events(logs, "billing.usage_threshold_failed")) == 1
