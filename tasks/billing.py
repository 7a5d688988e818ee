"""Billing jobs on the maintenance queue: Stripe subscriptions, usage reports, webhooks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from switchboard.billing import jobs
from switchboard.billing.gateway import TRANSIENT
from switchboard.billing.reporting import report_usage
from switchboard.billing.sync import sync_subscription, unsynced
from switchboard.billing.webhooks import process, unprocessed
from workers.celery_app import celery_app, runtime, settings


class UsageNotFullyReportedError(Exception):
    """Some batches failed; the task retries them (the same batches, the same identifiers)."""


# Stripe's transient failures retry with exponential backoff and jitter, with the same
# idempotency keys; anything else is recorded by the failure signal and left for an operator.
RETRY: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": settings.billing.report_max_retries,
}


@celery_app.task(name=jobs.SYNC_SUBSCRIPTION, **RETRY)
def sync(subscription_id: str) -> str:
    """Brings the subscription at Stripe in line with the tenant's latest request."""
    return runtime.run(
        sync_subscription(
            runtime.resources.sessionmaker, runtime.gateway, uuid.UUID(subscription_id)
        )
    )


@celery_app.task(name=jobs.RESEND_SUBSCRIPTIONS)
def resend_subscriptions() -> int:
    """Enqueues again the subscription changes that have waited too long for Stripe."""
    older_than = timedelta(seconds=settings.billing.subscription_resend_seconds)
    ids = runtime.run(unsynced(runtime.resources.sessionmaker, older_than=older_than))
    for subscription_id in ids:
        sync.delay(str(subscription_id))
    return len(ids)


@celery_app.task(
    name=jobs.REPORT_USAGE,
    **{**RETRY, "autoretry_for": (*TRANSIENT, UsageNotFullyReportedError)},
)
def report() -> dict[str, int]:
    """Reports every unreported usage record, batched per tenant, each batch once."""
    summary = runtime.run(
        report_usage(
            runtime.resources.sessionmaker,
            runtime.gateway,
            batch_size=settings.billing.report_batch,
        )
    )
    if summary.failed:
        raise UsageNotFullyReportedError(f"{len(summary.failed)} batches failed")
    return {"batches": len(summary.reported), "tokens": summary.tokens}


@celery_app.task(name=jobs.PROCESS_WEBHOOK, **RETRY)
def process_webhook(event_id: str) -> str:
    """Applies one stored Stripe event, at most once."""
    return runtime.run(process(runtime.resources.sessionmaker, event_id))


@celery_app.task(name=jobs.RESEND_WEBHOOKS)
def resend_webhooks() -> int:
    """Enqueues again the events stored but left unprocessed for a while."""
    older_than = timedelta(seconds=settings.billing.webhook_resend_seconds)
    ids = runtime.run(
        unprocessed(
            runtime.resources.sessionmaker,
            older_than=older_than,
            max_attempts=settings.billing.webhook_max_attempts,
        )
    )
    for event_id in ids:
        process_webhook.delay(event_id)
    return len(ids)
