"""Billing fixtures: the local Stripe every process of the session calls, priced plans
and tenants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Integer, Uuid, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.plans import sync_plan_prices
from switchboard.billing.repository import usage_of_finished_runs, usage_parameters
from switchboard.kit.db import SessionMaker
from switchboard.models import BillingCustomer, Tenant
from switchboard.settings import Settings
from tests.conftest import STRIPE_PORT
from tests.support.stripe_server import StripeServer

METER = "mtr_switchboard_tokens"


@pytest.fixture(scope="session")
def stripe_service() -> Iterator[StripeServer]:
    """Served where STRIPE_API_BASE points, for the API and the workers alike."""
    with StripeServer(port=STRIPE_PORT) as server:
        yield server


@pytest.fixture
def stripe_api(stripe_service: StripeServer) -> StripeServer:
    """The local Stripe, emptied, with the metered tokens price of every plan."""
    stripe_service.reset()
    stripe_service.add_price("price_tokens", usage_type="metered", meter=METER)
    return stripe_service


@pytest.fixture
async def priced_plans(committed: SessionMaker, settings: Settings) -> None:
    """What `switchboard billing sync-plans` does; committed, as workers read the plans."""
    async with committed() as session, session.begin():
        await sync_plan_prices(session, settings.billing)


async def new_tenant(sessionmaker: SessionMaker, *, customer: str | None = None) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:6]}")
        session.add(tenant)
        await session.flush()
        if customer is not None:
            session.add(BillingCustomer(tenant_id=tenant.id, stripe_customer_id=customer))
        return tenant.id


async def record_usage(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    input_tokens: int,
    output_tokens: int,
    at: datetime,
    cached_input_tokens: int = 0,
) -> None:
    """The usage record a run that ended ``at`` leaves, through the insert its final write uses."""
    run = select(
        literal(run_id, Uuid).label("id"),
        literal(tenant_id, Uuid).label("tenant_id"),
        literal(input_tokens, Integer).label("input_tokens"),
        literal(output_tokens, Integer).label("output_tokens"),
        literal(cached_input_tokens, Integer).label("cached_input_tokens"),
    ).cte("finished")
    await session.execute(usage_of_finished_runs(run), usage_parameters(at=at))
