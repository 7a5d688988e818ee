"""Stripe webhooks: verified and stored by the API, applied by a worker.

The API checks the signature over the raw body, inserts the event under its Stripe id (a
redelivery inserts nothing) and enqueues processing only for a new row. Processing applies the
event to our subscription unless a newer event already did (Stripe does not deliver in order),
and records the result, so every event is applied at most once and none is lost.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing import jobs as billing_jobs
from switchboard.billing.errors import InvalidWebhookError, WebhookDisabledError
from switchboard.billing.gateway import subscription_state
from switchboard.billing.metrics import WEBHOOK_EVENTS, WEBHOOK_LAG
from switchboard.billing.repository import BillingRepository
from switchboard.billing.settings import StripeSettings
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from switchboard.models import StripeEvent, Subscription

log = structlog.get_logger("switchboard.billing")

SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
INVOICE_STATUS = {"invoice.paid": "active", "invoice.payment_failed": "past_due"}


def verify(payload: bytes, signature: str | None, settings: StripeSettings) -> dict[str, Any]:
    """The event, if the body is signed with our secret within the tolerance."""
    if settings.webhook_secret is None:
        raise WebhookDisabledError("Not found.")
    if not signature:
        raise InvalidWebhookError("The Stripe-Signature header is missing.")
    try:
        event = stripe.Webhook.construct_event(
            payload,
            signature,
            settings.webhook_secret.get_secret_value(),
            tolerance=settings.webhook_tolerance_seconds,
        )
    except stripe.SignatureVerificationError:
        raise InvalidWebhookError(
            "The signature does not match, or its timestamp is outside the tolerance."
        ) from None
    except ValueError:
        raise InvalidWebhookError("The body is not a JSON Stripe event.") from None
    data: dict[str, Any] = json.loads(payload)
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise InvalidWebhookError("The event has no id or type.")
    del event
    return data


async def receive(
    session: AsyncSession,
    jobs: JobBuffer,
    payload: bytes,
    signature: str | None,
    settings: StripeSettings,
) -> None:
    """Verifies and stores an event, and enqueues its processing if it is new."""
    event = verify(payload, signature, settings)
    if await store(session, event):
        jobs.enqueue(billing_jobs.PROCESS_WEBHOOK, event["id"])


async def store(session: AsyncSession, event: dict[str, Any]) -> bool:
    """True if this event is new (and must be processed)."""
    new = await BillingRepository(session).store_event(event)
    WEBHOOK_EVENTS.labels(event["type"], "received" if new else "duplicate").inc()
    return new


async def unprocessed(
    sessionmaker: SessionMaker, *, older_than: timedelta, max_attempts: int, limit: int = 1000
) -> list[str]:
    """Events stored but not applied for a while: their job was lost (the API could not reach
    the broker after storing them, and Stripe's redelivery found them stored) or keeps
    failing. Enqueued again by beat; processing twice is impossible."""
    async with sessionmaker() as session:
        # One that failed max_attempts times needs a person (its last_error says why).
        return await BillingRepository(session).unprocessed_events(
            received_before=datetime.now(UTC) - older_than, max_attempts=max_attempts, limit=limit
        )


async def process(sessionmaker: SessionMaker, event_id: str) -> str:
    """Applies a stored event once; returns its result."""
    try:
        async with sessionmaker() as session, session.begin():
            repo = BillingRepository(session)
            # The row lock makes a concurrent run of the same task wait, then see it done.
            row = await repo.event(event_id, lock=True)
            if row is None:
                return "missing"
            if row.processed_at is not None:
                return row.result or "applied"
            result = await _apply(repo, row)
            row.attempts += 1
            row.result = result
            row.processed_at = datetime.now(UTC)
            row.last_error = None
            kind, lag = row.type, (row.processed_at - row.received_at).total_seconds()
    except Exception as exc:
        await _note_error(sessionmaker, event_id, exc)
        raise
    WEBHOOK_EVENTS.labels(kind, result).inc()
    WEBHOOK_LAG.observe(max(lag, 0.0))
    log.info("billing.webhook_processed", event_id=event_id, type=kind, result=result)
    return result


async def _apply(repo: BillingRepository, event: StripeEvent) -> str:
    obj: dict[str, Any] = event.payload.get("data", {}).get("object", {})
    if event.type in SUBSCRIPTION_EVENTS:
        subscription = await _subscription(repo, obj.get("id"), obj.get("metadata"))
        if subscription is None:
            return "ignored"
        if _stale(subscription, event):
            return "stale"
        state = subscription_state(obj)
        subscription.stripe_subscription_id = state.stripe_id
        subscription.stripe_item_id = state.item_id or subscription.stripe_item_id
        subscription.status = "canceled" if event.type.endswith(".deleted") else state.status
        subscription.seats = state.seats
        subscription.cancel_at_period_end = state.cancel_at_period_end
        subscription.current_period_start = state.current_period_start
        subscription.current_period_end = state.current_period_end
    elif event.type in INVOICE_STATUS:
        subscription = await _subscription(repo, _invoice_subscription(obj), None)
        if subscription is None:
            return "ignored"
        if _stale(subscription, event):
            return "stale"
        if subscription.status == "canceled":
            return "stale"
        subscription.status = INVOICE_STATUS[event.type]
    else:
        return "ignored"
    subscription.stripe_event_at = event.stripe_created_at
    subscription.updated_at = datetime.now(UTC)
    return "applied"


def _stale(subscription: Subscription, event: StripeEvent) -> bool:
    # Stripe's ``created`` has one-second resolution: events of the same second apply in
    # arrival order.
    return (
        subscription.stripe_event_at is not None
        and event.stripe_created_at < subscription.stripe_event_at
    )


async def _subscription(
    repo: BillingRepository, stripe_id: Any, metadata: Any
) -> Subscription | None:
    ours = metadata.get("subscription_id") if isinstance(metadata, dict) else None
    subscription_id = None
    if isinstance(ours, str):
        with contextlib.suppress(ValueError):
            subscription_id = uuid.UUID(ours)
    return await repo.subscription_for_stripe(
        stripe_id if isinstance(stripe_id, str) else None, subscription_id
    )


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    # Newer API versions moved it under parent.subscription_details.
    direct = invoice.get("subscription")
    if isinstance(direct, str):
        return direct
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    found = details.get("subscription")
    return found if isinstance(found, str) else None


async def _note_error(sessionmaker: SessionMaker, event_id: str, exc: Exception) -> None:
    async with sessionmaker() as session, session.begin():
        row = await BillingRepository(session).event(event_id)
        if row is not None:
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            WEBHOOK_EVENTS.labels(row.type, "failed").inc()
    log.warning("billing.webhook_failed", event_id=event_id, error=type(exc).__name__)
