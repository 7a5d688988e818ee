"""Subscription commands reach the local Stripe through a real worker, once each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from httpx import AsyncClient
from sqlalchemy import select

from switchboard.auth.keyring import KeySnapshot
from switchboard.billing.sync import unsynced
from switchboard.kit.db import SessionMaker
from switchboard.models import BillingCustomer, Membership, Subscription, User
from switchboard.settings import Settings
from tests.billing.conftest import new_tenant
from tests.support.auth import bearer
from tests.support.stripe_server import StripeServer
from tests.support.waiting import eventually

URL = "/api/v1/billing/subscription"

pytestmark = pytest.mark.usefixtures("committed_keys", "priced_plans", "worker")


@pytest.fixture
async def tenant(committed: SessionMaker) -> uuid.UUID:
    return await new_tenant(committed)


@pytest.fixture
async def owner(
    committed_keys: KeySnapshot, settings: Settings, tenant: uuid.UUID, committed: SessionMaker
) -> dict[str, str]:
    """The tenant's owner, committed: billing reads the caller's role from its membership."""
    async with committed() as session, session.begin():
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add(user)
        await session.flush()
        session.add(Membership(tenant_id=tenant, user_id=user.id, role="owner"))
    return bearer(committed_keys, settings, tenant, "owner", subject=user.id)


async def synced(sessionmaker: SessionMaker, tenant: uuid.UUID, **expected: Any) -> Subscription:
    """The tenant's subscription once every intent reached Stripe and it has these values."""

    async def probe() -> Subscription | None:
        async with sessionmaker() as session:
            current = await session.scalar(
                select(Subscription)
                .where(Subscription.tenant_id == tenant)
                .order_by(Subscription.created_at.desc())
                .limit(1)
            )
        if current is None or current.synced_version < current.sync_version:
            return None
        if any(getattr(current, name) != value for name, value in expected.items()):
            return None
        return current

    return await eventually(probe, timeout=60)


def of_tenant(stripe_api: StripeServer, tenant: uuid.UUID) -> list[dict[str, Any]]:
    customers = {
        cid
        for cid, c in stripe_api.customers().items()
        if c["metadata"]["tenant_id"] == str(tenant)
    }
    return [s for s in stripe_api.subscriptions().values() if s["customer"] in customers]


async def test_start_change_and_cancel_reach_stripe(
    live_client: AsyncClient,
    committed: SessionMaker,
    stripe_api: StripeServer,
    tenant: uuid.UUID,
    owner: dict[str, str],
) -> None:
    assert (
        await live_client.post(URL, json={"plan_code": "team", "seats": 3}, headers=owner)
    ).is_success
    mine = await synced(committed, tenant, status="active")

    at_stripe = of_tenant(stripe_api, tenant)
    assert len(at_stripe) == 1
    assert at_stripe[0]["id"] == mine.stripe_subscription_id
    assert at_stripe[0]["metadata"] == {"subscription_id": str(mine.id)}
    items = {item["price"]["id"]: item for item in at_stripe[0]["items"]["data"]}
    assert items["price_team_seat"]["quantity"] == 3
    assert "price_tokens" in items  # the metered tokens price rides along
    assert mine.current_period_end is not None
    async with committed() as session:
        customer = await session.get(BillingCustomer, tenant)
    assert customer is not None
    assert customer.stripe_customer_id == at_stripe[0]["customer"]
    [customer_call] = stripe_api.requests_to("POST", "/v1/customers")
    assert customer_call.idempotency_key == f"customer-{tenant}"

    assert (await live_client.patch(URL, json={"seats": 5}, headers=owner)).is_success
    await synced(committed, tenant, seats=5, synced_version=2)
    assert (await live_client.delete(URL, headers=owner)).is_success
    await synced(committed, tenant, synced_version=3)

    [current] = of_tenant(stripe_api, tenant)
    assert current["cancel_at_period_end"] is True
    seat = next(i for i in current["items"]["data"] if i["price"]["id"] == "price_team_seat")
    assert seat["quantity"] == 5
    updates = stripe_api.requests_to("POST", f"/v1/subscriptions/{current['id']}")
    assert [u.idempotency_key for u in updates] == [
        f"subscription-{mine.id}-v2",
        f"subscription-{mine.id}-v3",
    ]
    body = (await live_client.get(URL, headers=owner)).json()
    assert (body["status"], body["seats"], body["cancel_at_period_end"]) == ("active", 5, True)


@pytest.mark.parametrize("failure", ["500", "429", "timeout"])
async def test_failed_calls_are_retried_and_create_one_subscription(
    live_client: AsyncClient,
    committed: SessionMaker,
    stripe_api: StripeServer,
    tenant: uuid.UUID,
    owner: dict[str, str],
    failure: str,
) -> None:
    if failure == "timeout":
        # Stripe creates it, but the answer comes after the client (2 s timeout) gave up.
        stripe_api.delay_next(3, path_prefix="/v1/subscriptions")
    else:
        stripe_api.fail_next(2, int(failure), path_prefix="/v1/subscriptions")

    assert (await live_client.post(URL, json={"plan_code": "starter"}, headers=owner)).is_success
    mine = await synced(committed, tenant, status="active")

    assert [s["id"] for s in of_tenant(stripe_api, tenant)] == [mine.stripe_subscription_id]
    attempts = stripe_api.requests_to("POST", "/v1/subscriptions")
    assert len(attempts) >= 2
    assert {a.idempotency_key for a in attempts} == {f"subscription-{mine.id}-create"}


async def test_a_refused_subscription_fails_and_the_tenant_may_start_again(
    live_client: AsyncClient,
    committed: SessionMaker,
    stripe_api: StripeServer,
    tenant: uuid.UUID,
    owner: dict[str, str],
) -> None:
    stripe_api.fail_next(
        1, 402, path_prefix="/v1/subscriptions", error_type="card_error", message="Card declined."
    )

    assert (await live_client.post(URL, json={"plan_code": "team"}, headers=owner)).is_success
    failed = await synced(committed, tenant, status="failed")

    assert failed.last_error is not None
    assert "declined" in failed.last_error
    assert (await live_client.get(URL, headers=owner)).status_code == 404
    again = await live_client.post(URL, json={"plan_code": "team"}, headers=owner)
    assert again.status_code == 201


async def test_an_intent_whose_job_was_lost_is_sent_again(
    celery_app: Celery, committed: SessionMaker, stripe_api: StripeServer, tenant: uuid.UUID
) -> None:
    """Committed, but the API never reached the broker: beat's resend picks it up."""
    async with committed() as session, session.begin():
        waiting = Subscription(tenant_id=tenant, plan_code="team", seats=2)
        session.add(waiting)
        await session.flush()
        waiting.updated_at = datetime.now(UTC) - timedelta(hours=1)

    assert waiting.id in await unsynced(committed, older_than=timedelta(minutes=10))
    celery_app.send_task("billing.subscriptions.resend")
    mine = await synced(committed, tenant, status="active")

    assert mine.id == waiting.id
    assert [s["id"] for s in of_tenant(stripe_api, tenant)] == [mine.stripe_subscription_id]
    assert waiting.id not in await unsynced(committed, older_than=timedelta(0))
