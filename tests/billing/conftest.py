"""Billing fixtures: the local Stripe every process of the session calls, priced plans,
tenants and the tokens of their members."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.billing.plans import sync_plan_prices
from switchboard.kit.db import SessionMaker
from switchboard.models import BillingCustomer, Tenant
from switchboard.settings import Settings
from tests.conftest import STRIPE_PORT
from tests.support.app import serving
from tests.support.auth import access_header, claims_for, forge
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
def committed(engine: AsyncEngine) -> SessionMaker:
    """Sessions that really commit, for what a worker process must see."""
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def priced_plans(committed: SessionMaker, settings: Settings) -> None:
    """What `switchboard billing sync-plans` does; committed, as workers read the plans."""
    async with committed() as session, session.begin():
        await sync_plan_prices(session, settings.billing)


@pytest.fixture
async def live_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app as deployed: every request commits, its jobs reach the broker after commit."""
    async with serving(create_app(settings)) as client:
        yield client


async def new_tenant(sessionmaker: SessionMaker, *, customer: str | None = None) -> uuid.UUID:
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:6]}")
        session.add(tenant)
        await session.flush()
        if customer is not None:
            session.add(BillingCustomer(tenant_id=tenant.id, stripe_customer_id=customer))
        return tenant.id


def bearer(
    keys: KeySnapshot, settings: Settings, tenant_id: uuid.UUID, role: str
) -> dict[str, str]:
    """The Authorization header of a member of the tenant with this role."""
    assert keys.signing_kid is not None
    token = forge(
        access_header(keys.signing_kid),
        claims_for(
            settings,
            sub=str(uuid.uuid4()),
            tid=str(tenant_id),
            roles=[role],
            jti=uuid.uuid4().hex,
        ),
        keys.signing_key,
    )
    return {"Authorization": f"Bearer {token}"}
