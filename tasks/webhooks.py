"""Outbound webhook deliveries, on their own ``webhooks`` queue: a slow receiver delays no
run and no maintenance job."""

from __future__ import annotations

from switchboard.kit.db import DATABASE_UNAVAILABLE
from switchboard.webhooks import jobs
from switchboard.webhooks.delivery import Deliverer, dispatch_due, parse_ref
from workers.celery_app import celery_app, runtime, settings


def deliverer() -> Deliverer:
    return Deliverer(
        sessionmaker=runtime.resources.sessionmaker,
        transport=runtime.webhook_transport,
        box=runtime.webhook_secret_box,
        slots=runtime.webhook_slots,
        jobs=runtime.job_sender,
        settings=settings.webhooks,
    )


# Postgres out of reach (or its pool exhausted) at the claim: try again soon. At the record,
# the retry finds the delivery still leased and leaves it to the dispatcher once the lease ends:
# the receiver may get it twice, under one webhook-id.
@celery_app.task(
    name=jobs.DELIVER,
    autoretry_for=DATABASE_UNAVAILABLE,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=10,
)
def deliver(delivery_id: str, endpoint_id: str, busy: int = 0) -> str:
    """One attempt of a delivery that is due; its row says what came of it."""
    return runtime.run(deliverer().deliver(parse_ref(delivery_id, endpoint_id), busy))


@celery_app.task(name=jobs.DISPATCH)
def dispatch() -> int:
    """Sends the deliveries whose retry is due, or whose job or worker was lost."""
    return runtime.run(
        dispatch_due(runtime.resources.sessionmaker, runtime.job_sender, settings.webhooks)
    )
