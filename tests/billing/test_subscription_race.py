"""Two owners subscribing one tenant at the same moment: one subscription, and a 409 for the
other, never a 500 from the unique index both inserts run into."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.billing.jobs import SYNC_SUBSCRIPTION
from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, Subscription, Tenant, User
from switchboard.settings import Settings
from tests.billing.conftest import new_tenant
from tests.support.app import serving
from tests.support.auth import bearer
from tests.support.jobs import SentJobs
from tests.support.waiting import eventually

URL = "/api/v1/billing/subscription"

pytestmark = pytest.mark.usefixtures("priced_plans")


@pytest.fixture
def sent() -> SentJobs:
    return SentJobs()


@pytest.fixture
async def api(settings: Settings, sent: SentJobs) -> AsyncIterator[AsyncClient]:
    """The app as deployed (each request its own connection and commit)."""
    async with serving(create_app(settings, job_sender=sent)) as client:
        yield client


async def committed_owners(
    committed: SessionMaker, keys: KeySnapshot, settings: Settings, tenant: uuid.UUID, count: int
) -> list[dict[str, str]]:
    headers = []
    async with committed() as session, session.begin():
        for _ in range(count):
            user = User(
                email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1
            )
            session.add(user)
            await session.flush()
            session.add(Membership(tenant_id=tenant, user_id=user.id, role="owner"))
            headers.append(bearer(keys, settings, tenant, "owner", subject=user.id))
    return headers


async def waiting_on_locks(committed: SessionMaker) -> int | None:
    async with committed() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'switchboard-api' AND wait_event_type = 'Lock'"
            )
        )
    return waiting if waiting == 2 else None


async def test_concurrent_subscriptions_of_one_tenant_make_one_and_a_409(
    api: AsyncClient,
    committed: SessionMaker,
    committed_keys: KeySnapshot,
    settings: Settings,
    sent: SentJobs,
) -> None:
    tenant = await new_tenant(committed)
    first, second = await committed_owners(committed, committed_keys, settings, tenant, 2)

    # Holding the tenant's row keeps both requests past their "no subscription yet" check,
    # waiting on it to count the seats; let go, they insert one after the other.
    async with committed() as session, session.begin():
        await session.execute(select(Tenant.id).where(Tenant.id == tenant).with_for_update())
        racing = asyncio.gather(
            api.post(URL, json={"plan_code": "team", "seats": 3}, headers=first),
            api.post(URL, json={"plan_code": "team", "seats": 3}, headers=second),
        )
        await eventually(lambda: waiting_on_locks(committed))
    responses = await racing

    assert sorted(response.status_code for response in responses) == [201, 409]
    [refused] = [response for response in responses if response.status_code == 409]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "billing.subscription_exists"
    async with committed() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.tenant_id == tenant)
        )
    assert stored == 1
    assert [job.name for job in sent.jobs] == [SYNC_SUBSCRIPTION]
