"""Stripe webhooks through the real app: verified, stored once, applied in the right order."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from celery import Celery
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from switchboard.billing import webhooks
from switchboard.kit.db import SessionMaker
from switchboard.models import StripeEvent, Subscription, Tenant
from switchboard.settings import Settings
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.waiting import eventually

URL = "/api/v1/billing/webhooks/stripe"
PROBLEM = "application/problem+json"


def event(kind: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": kind,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
    }


def signed(body: str, *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=at)


async def deliver(client: AsyncClient, payload: dict[str, Any]) -> int:
    body = json.dumps(payload)
    response = await client.post(URL, content=body, headers={"Stripe-Signature": signed(body)})
    return response.status_code


@pytest.fixture
async def subscription(sessionmaker: SessionMaker) -> Subscription:
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name="t")
        session.add(tenant)
        await session.flush()
        row = Subscription(
            tenant_id=tenant.id,
            plan_code="team",
            seats=2,
            status="active",
            stripe_subscription_id=f"sub_{uuid.uuid4().hex[:12]}",
        )
        session.add(row)
    return row


def stripe_subscription(stripe_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": stripe_id,
        "object": "subscription",
        "status": status,
        "cancel_at_period_end": False,
        "items": {"data": [{"id": "si_1", "quantity": 2, "current_period_end": 1_900_000_000}]},
        **extra,
    }


@pytest.mark.parametrize(
    ("body", "signature", "detail"),
    [
        ("{}", lambda body: None, "missing"),
        ("{}", lambda body: "t=1,v1=abc", "signature"),
        ("not json", signed, "JSON"),
        ('{"id": 1}', lambda body: signed(body, secret="whsec_other"), "signature"),
    ],
    ids=["missing header", "bad signature", "malformed json", "other secret"],
)
async def test_bad_deliveries_get_400_problems(
    client: AsyncClient, body: str, signature: Callable[[str], str | None], detail: str
) -> None:
    # Signed when the test runs, not when it is collected: a signature is only valid for
    # Stripe's tolerance (5 minutes) after it is made.
    header = signature(body)
    headers = {} if header is None else {"Stripe-Signature": header}
    response = await client.post(URL, content=body, headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert detail in response.json()["detail"]


async def test_a_stale_signature_is_refused(client: AsyncClient) -> None:
    body = json.dumps(event("invoice.paid", {}))
    old = int(time.time()) - 301  # tolerance is 300 s

    response = await client.post(
        URL, content=body, headers={"Stripe-Signature": signed(body, at=old)}
    )

    assert response.status_code == 400
    assert "timestamp" in response.json()["detail"]


async def test_without_a_secret_the_endpoint_does_not_exist(
    client: AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings.stripe, "webhook_secret", None)
    body = json.dumps(event("invoice.paid", {}))

    response = await client.post(URL, content=body, headers={"Stripe-Signature": signed(body)})

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_five_deliveries_store_one_event(
    client: AsyncClient, sessionmaker: SessionMaker, subscription: Subscription
) -> None:
    payload = event(
        "customer.subscription.updated",
        stripe_subscription(subscription.stripe_subscription_id or "", "past_due"),
    )
    assert [await deliver(client, payload) for _ in range(5)] == [200] * 5

    async with sessionmaker() as session:
        stored = await session.scalar(
            select(func.count()).select_from(StripeEvent).where(StripeEvent.id == payload["id"])
        )
    assert stored == 1
    assert await webhooks.process(sessionmaker, payload["id"]) == "applied"
    assert await webhooks.process(sessionmaker, payload["id"]) == "applied"  # not again
    async with sessionmaker() as session:
        row = await session.get(StripeEvent, payload["id"])
        current = await session.get(Subscription, subscription.id)
    assert row is not None
    assert row.attempts == 1
    assert row.processed_at is not None
    assert current is not None
    assert current.status == "past_due"


async def test_events_out_of_order_end_in_the_newest_state(
    client: AsyncClient, sessionmaker: SessionMaker, subscription: Subscription
) -> None:
    stripe_id = subscription.stripe_subscription_id or ""
    now = int(time.time())
    failed = event("invoice.payment_failed", {"subscription": stripe_id}, created=now - 60)
    paid = event(
        "invoice.paid",
        {"parent": {"subscription_details": {"subscription": stripe_id}}},
        created=now - 30,
    )
    canceled = event(
        "customer.subscription.deleted", stripe_subscription(stripe_id, "canceled"), created=now
    )
    # Delivered and processed newest first.
    for payload in (canceled, paid, failed):
        assert await deliver(client, payload) == 200
    results = [await webhooks.process(sessionmaker, p["id"]) for p in (canceled, paid, failed)]

    assert results == ["applied", "stale", "stale"]
    async with sessionmaker() as session:
        current = await session.get(Subscription, subscription.id)
    assert current is not None
    assert current.status == "canceled"
    assert current.stripe_event_at == datetime.fromtimestamp(now, UTC)


async def test_invoice_events_move_the_status(
    client: AsyncClient, sessionmaker: SessionMaker, subscription: Subscription
) -> None:
    stripe_id = subscription.stripe_subscription_id or ""
    now = int(time.time())
    failed = event("invoice.payment_failed", {"subscription": stripe_id}, created=now - 10)
    paid = event("invoice.paid", {"subscription": stripe_id}, created=now)

    for payload, status in ((failed, "past_due"), (paid, "active")):
        assert await deliver(client, payload) == 200
        assert await webhooks.process(sessionmaker, payload["id"]) == "applied"
        async with sessionmaker() as session:
            current = await session.get(Subscription, subscription.id)
        assert current is not None
        assert current.status == status


async def test_unknown_types_are_stored_and_ignored(
    client: AsyncClient, sessionmaker: SessionMaker
) -> None:
    payload = event("charge.refunded", {"id": "ch_1"})

    assert await deliver(client, payload) == 200
    assert await webhooks.process(sessionmaker, payload["id"]) == "ignored"
    async with sessionmaker() as session:
        row = await session.get(StripeEvent, payload["id"])
    assert row is not None
    assert row.result == "ignored"
    assert row.payload["data"]["object"]["id"] == "ch_1"


def received(kind: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_webhook_events_total", {"type": kind, "result": result}
    )
    return value or 0.0


@pytest.mark.usefixtures("worker")
async def test_a_worker_applies_a_delivered_event_once(
    live_client: AsyncClient, committed: SessionMaker
) -> None:
    async with committed() as session, session.begin():
        tenant = Tenant(name="t")
        session.add(tenant)
        await session.flush()
        mine = Subscription(
            tenant_id=tenant.id,
            plan_code="team",
            seats=1,
            status="active",
            stripe_subscription_id=f"sub_{uuid.uuid4().hex[:12]}",
        )
        session.add(mine)
    payload = event("invoice.payment_failed", {"subscription": mine.stripe_subscription_id})
    counted = {result: received(payload["type"], result) for result in ("received", "duplicate")}

    assert [await deliver(live_client, payload) for _ in range(5)] == [200] * 5
    # One row, one job: the four redeliveries enqueue nothing.
    assert received(payload["type"], "received") == counted["received"] + 1
    assert received(payload["type"], "duplicate") == counted["duplicate"] + 4

    async def processed() -> StripeEvent | None:
        async with committed() as session:
            row = await session.get(StripeEvent, payload["id"])
        return row if row is not None and row.processed_at is not None else None

    row = await eventually(processed)
    async with committed() as session:
        current = await session.get(Subscription, mine.id)
    assert (row.result, row.attempts) == ("applied", 1)
    assert current is not None
    assert current.status == "past_due"


@pytest.mark.usefixtures("worker")
async def test_an_event_whose_job_was_lost_is_sent_again(
    celery_app: Celery, committed: SessionMaker
) -> None:
    """Stored, but the API never reached the broker: beat's resend picks it up."""
    stale, fresh = event("charge.refunded", {"id": "ch_1"}), event("charge.refunded", {})
    async with committed() as session, session.begin():
        for payload in (stale, fresh):
            assert await webhooks.store(session, payload)
        await session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == stale["id"])
            .values(received_at=datetime.now(UTC) - timedelta(hours=1))
        )

    waiting = await webhooks.unprocessed(
        committed, older_than=timedelta(minutes=5), max_attempts=20
    )
    assert stale["id"] in waiting
    assert fresh["id"] not in waiting  # its own job may still be on the way
    given_up = await webhooks.unprocessed(
        committed, older_than=timedelta(minutes=5), max_attempts=0
    )
    assert stale["id"] not in given_up
    celery_app.send_task("billing.webhooks.resend")

    async def processed() -> StripeEvent | None:
        async with committed() as session:
            row = await session.get(StripeEvent, stale["id"])
        return row if row is not None and row.processed_at is not None else None

    row = await eventually(processed, timeout=30)
    assert row.result == "ignored"
    assert stale["id"] not in await webhooks.unprocessed(
        committed, older_than=timedelta(0), max_attempts=20
    )
