"""Bringing a tenant's subscription at Stripe in line with the intent stored in Postgres.

No transaction is held open across a Stripe call: the intent is read, Stripe is called with
keys derived from the row and its version, and the answer is stored in a second transaction.
A retry (or a second task racing this one) repeats the same calls, which Stripe answers once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from switchboard.billing.errors import PermanentStripeError
from switchboard.billing.gateway import StripeGateway, SubscriptionState
from switchboard.billing.repository import BillingRepository
from switchboard.kit.db import SessionMaker

log = structlog.get_logger("switchboard.billing")


@dataclass(frozen=True)
class _Intent:
    tenant_id: uuid.UUID
    tenant_name: str
    stripe_id: str | None
    item_id: str | None
    customer_id: str | None
    seat_price: str
    usage_price: str | None
    seats: int
    cancel_at_period_end: bool
    version: int


class PlanNotPricedError(Exception):
    """The plan has no Stripe price: run `switchboard billing sync-plans`."""


async def sync_subscription(
    sessionmaker: SessionMaker, gateway: StripeGateway, subscription_id: uuid.UUID
) -> str:
    """Returns what happened: ``synced``, ``current`` (nothing to do) or ``gone``."""
    intent = await _intent(sessionmaker, subscription_id)
    if intent is None:
        return "current"
    customer_id = intent.customer_id
    if customer_id is None:
        customer_id = await gateway.create_customer(intent.tenant_id, intent.tenant_name)
        async with sessionmaker() as session, session.begin():
            await BillingRepository(session).save_customer(intent.tenant_id, customer_id)
    try:
        if intent.stripe_id is None:
            state = await gateway.create_subscription(
                subscription_id,
                customer_id=customer_id,
                seat_price=intent.seat_price,
                usage_price=intent.usage_price,
                seats=intent.seats,
                cancel_at_period_end=intent.cancel_at_period_end,
            )
        else:
            state = await gateway.update_subscription(
                intent.stripe_id,
                item_id=intent.item_id,
                seat_price=intent.seat_price,
                seats=intent.seats,
                cancel_at_period_end=intent.cancel_at_period_end,
                idempotency_key=f"subscription-{subscription_id}-v{intent.version}",
            )
    except PermanentStripeError as exc:
        await _refused(sessionmaker, subscription_id, intent, str(exc))
        raise
    await _store(sessionmaker, subscription_id, intent.version, state)
    log.info(
        "billing.subscription_synced", subscription_id=str(subscription_id), status=state.status
    )
    return "synced"


async def unsynced(sessionmaker: SessionMaker, *, older_than: timedelta) -> list[uuid.UUID]:
    """Subscriptions whose latest intent has waited that long for Stripe: the job was lost
    (the API committed but could not reach the broker) or gave up on a long Stripe outage.
    Enqueued again by beat; the keys make a repeat harmless."""
    async with sessionmaker() as session:
        return await BillingRepository(session).unsynced_subscriptions(
            updated_before=datetime.now(UTC) - older_than
        )


async def _intent(sessionmaker: SessionMaker, subscription_id: uuid.UUID) -> _Intent | None:
    async with sessionmaker() as session:
        row = await BillingRepository(session).subscription_with_plan(subscription_id)
    if row is None:
        return None
    subscription, plan, tenant, customer_id = row
    if subscription.synced_version >= subscription.sync_version or subscription.status in (
        "canceled",
        "failed",
    ):
        return None
    if plan.stripe_seat_price_id is None:
        raise PlanNotPricedError(f"plan {plan.code!r} has no Stripe seat price")
    return _Intent(
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        stripe_id=subscription.stripe_subscription_id,
        item_id=subscription.stripe_item_id,
        customer_id=customer_id,
        seat_price=plan.stripe_seat_price_id,
        usage_price=plan.stripe_usage_price_id,
        seats=subscription.seats,
        cancel_at_period_end=subscription.cancel_at_period_end,
        version=subscription.sync_version,
    )


async def _store(
    sessionmaker: SessionMaker, subscription_id: uuid.UUID, version: int, state: SubscriptionState
) -> None:
    async with sessionmaker() as session, session.begin():
        subscription = await BillingRepository(session).subscription(subscription_id, lock=True)
        if subscription is None:
            return
        subscription.stripe_subscription_id = state.stripe_id
        subscription.stripe_item_id = state.item_id
        subscription.synced_version = max(subscription.synced_version, version)
        subscription.last_error = None
        # A webhook newer than this answer may already have moved the status on.
        if subscription.stripe_event_at is None:
            subscription.status = state.status
            subscription.current_period_start = state.current_period_start
            subscription.current_period_end = state.current_period_end
        subscription.updated_at = datetime.now(UTC)


async def _refused(
    sessionmaker: SessionMaker, subscription_id: uuid.UUID, intent: _Intent, reason: str
) -> None:
    async with sessionmaker() as session, session.begin():
        subscription = await BillingRepository(session).subscription(subscription_id, lock=True)
        if subscription is None:
            return
        subscription.last_error = reason[:1000]
        subscription.synced_version = max(subscription.synced_version, intent.version)
        if intent.stripe_id is None:
            subscription.status = "failed"  # never created: the tenant may start again
        subscription.updated_at = datetime.now(UTC)
    log.error("billing.subscription_refused", subscription_id=str(subscription_id), reason=reason)
