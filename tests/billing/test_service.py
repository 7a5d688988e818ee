"""The plan a tenant is on and its limits."""

from __future__ import annotations

import pytest

from switchboard.billing.errors import PlanNotFoundError
from switchboard.billing.schemas import SubscriptionStart
from switchboard.billing.service import FREE_PLAN, BillingService
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from tests.billing.conftest import new_tenant


async def test_a_tenant_without_a_subscription_is_on_the_free_plan(
    sessionmaker: SessionMaker,
) -> None:
    tenant = await new_tenant(sessionmaker)
    async with sessionmaker() as session:
        plan = await BillingService(session).tenant_plan(tenant)

    assert plan.plan_code == FREE_PLAN
    assert plan.limits.seats == 3
    assert plan.limits.monthly_tokens == 200_000


async def test_a_subscribed_tenant_has_its_plans_limits_and_the_seats_it_pays_for(
    sessionmaker: SessionMaker,
) -> None:
    tenant = await new_tenant(sessionmaker)
    async with sessionmaker() as session:
        billing = BillingService(session)
        await billing.start(tenant, SubscriptionStart(plan_code="team", seats=7), JobBuffer())
        plan = await billing.tenant_plan(tenant)

    assert plan.plan_code == "team"
    assert plan.limits.seats == 7
    assert plan.limits.concurrent_runs == 50
    assert plan.limits.monthly_tokens is None


async def test_nobody_subscribes_to_the_free_plan(sessionmaker: SessionMaker) -> None:
    tenant = await new_tenant(sessionmaker)
    async with sessionmaker() as session:
        with pytest.raises(PlanNotFoundError):
            await BillingService(session).start(
                tenant, SubscriptionStart(plan_code=FREE_PLAN), JobBuffer()
            )
