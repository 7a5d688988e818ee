"""Usage thresholds: 80% and 100% of the plan's monthly tokens, each recorded once per tenant
and month (UTC), after a run's usage is committed.

A job: it takes a sessionmaker and owns its one short transaction. Its caller is the run
executor, after the run's final write, so it never fails a run: whatever goes wrong is logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog

from switchboard.billing.metrics import USAGE_THRESHOLDS
from switchboard.billing.periods import period_of
from switchboard.billing.repository import BillingRepository
from switchboard.billing.service import FREE_PLAN
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobSender
from switchboard.webhooks.jobs import DeliveryRef, deliver_jobs
from switchboard.webhooks.outbox import record_event
from switchboard.webhooks.schemas import WebhookEventType

log = structlog.get_logger("switchboard.billing")

# Shares of a plan's monthly_tokens worth telling a tenant about, in percent.
THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class ThresholdReached:
    tenant_id: uuid.UUID
    period_start: datetime
    percent: int
    tokens: int  # the period's tokens when it was recorded
    limit_tokens: int  # the plan's monthly_tokens then


async def record_thresholds(
    sessionmaker: SessionMaker,
    tenant_id: uuid.UUID,
    now: datetime,
    jobs: JobSender | None = None,
) -> list[ThresholdReached]:
    """Records the thresholds the tenant's usage in the month of ``now`` has reached that were
    not recorded yet, each with its ``usage.threshold_reached`` webhook event, and announces
    each; returns them. The events' deliveries go through ``jobs`` after the commit. A plan
    with unlimited tokens records nothing. Never raises an ``Exception``: a failure is logged
    and records nothing (a later run of the same tenant records what this one missed)."""
    period_start, _ = period_of(now)
    deliveries: list[DeliveryRef] = []
    try:
        async with sessionmaker() as session, session.begin():
            crossed = await BillingRepository(session).record_crossed_thresholds(
                tenant_id, period_start, percents=THRESHOLDS, default_plan=FREE_PLAN, now=now
            )
            reached = [
                ThresholdReached(tenant_id, period_start, c.percent, c.tokens, c.limit_tokens)
                for c in crossed
            ]
            for threshold in reached:
                deliveries += await record_event(
                    session,
                    tenant_id,
                    WebhookEventType.usage_threshold_reached,
                    threshold_data(threshold),
                )
    except Exception:
        log.exception("billing.usage_threshold_failed", tenant_id=str(tenant_id))
        return []
    for threshold in reached:
        threshold_reached(threshold)
    if deliveries and jobs is not None:
        try:
            await jobs.send(deliver_jobs(deliveries))
        except Exception:
            log.exception("billing.usage_threshold_webhooks_not_sent", tenant_id=str(tenant_id))
    return reached


def threshold_data(threshold: ThresholdReached) -> dict[str, object]:
    return {
        "tenant_id": str(threshold.tenant_id),
        "period": threshold.period_start.strftime("%Y-%m"),
        "percent": threshold.percent,
        "tokens": threshold.tokens,
        "limit_tokens": threshold.limit_tokens,
    }


def threshold_reached(threshold: ThresholdReached) -> None:
    """Called once for each threshold recorded, after its commit: the one place that tells
    the metrics and the log."""
    USAGE_THRESHOLDS.labels(percent=str(threshold.percent)).inc()
    log.info(
        "billing.usage_threshold_reached",
        tenant_id=str(threshold.tenant_id),
        percent=threshold.percent,
        period=threshold.period_start.strftime("%Y-%m"),
        tokens=threshold.tokens,
        limit_tokens=threshold.limit_tokens,
    )
