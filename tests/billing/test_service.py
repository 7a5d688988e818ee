"""The plan a tenant is on, its limits, and the seats a subscription may pay for."""

from __future__ import annotations

import uuid

import pytest

from switchboard.billing.errors import PlanNotFoundError, SeatsInUseError, TooManySeatsError
from switchboard.billing.schemas import SubscriptionChange, SubscriptionStart
from switchboard.billing.service import FREE_PLAN, BillingService
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from switchboard.models import Membership, User
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


async def test_a_subscription_pays_for_the_seats_in_use_and_no_more_than_its_plan_allows(
    sessionmaker: SessionMaker,
) -> None:
    tenant = await new_tenant(sessionmaker)
    async with sessionmaker() as session, session.begin():
        for _ in range(2):
            user = User(
                email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1
            )
            session.add(user)
            await session.flush()
            session.add(Membership(tenant_id=tenant, user_id=user.id, role="member"))

    async with sessionmaker() as session:
        billing = BillingService(session)
        with pytest.raises(SeatsInUseError):
            await billing.start(tenant, SubscriptionStart(plan_code="team", seats=1), JobBuffer())
        with pytest.raises(TooManySeatsError):
            await billing.start(tenant, SubscriptionStart(plan_code="team", seats=51), JobBuffer())
        started = await billing.start(
            tenant, SubscriptionStart(plan_code="starter", seats=10), JobBuffer()
        )
        with pytest.raises(TooManySeatsError):  # starter allows 10; team, 50
            await billing.change(tenant, SubscriptionChange(seats=11), JobBuffer())
        moved = await billing.change(
            tenant, SubscriptionChange(plan_code="team", seats=11), JobBuffer()
        )

    assert started.seats == 10
    assert (moved.plan_code, moved.seats) == ("team", 11)
