"""Every periodic task of the system, in one place. Times are UTC."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from switchboard.auth import jobs as auth_jobs
from switchboard.billing import jobs as billing_jobs
from switchboard.ops import jobs as ops_jobs
from switchboard.retention import jobs as retention_jobs
from switchboard.runs import jobs as runs_jobs
from switchboard.settings import Settings
from switchboard.webhooks import jobs as webhooks_jobs


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "system-heartbeat": {
            "task": ops_jobs.HEARTBEAT,
            "schedule": settings.beat.heartbeat_seconds,
            # A heartbeat nobody ran in time is stale; do not let them pile up behind an outage.
            "options": {"expires": max(settings.beat.heartbeat_seconds, 30.0)},
        },
        "runs-sweep": {
            "task": runs_jobs.SWEEP,
            "schedule": settings.runs.sweep_seconds,
            "options": {"expires": settings.runs.sweep_seconds},
        },
        "billing-usage-report": {
            "task": billing_jobs.REPORT_USAGE,
            "schedule": settings.billing.report_seconds,
            # A report that waited past the next one is redundant: the next one sends it all.
            "options": {"expires": settings.billing.report_seconds},
        },
        "billing-webhooks-resend": {
            "task": billing_jobs.RESEND_WEBHOOKS,
            "schedule": settings.billing.webhook_resend_seconds,
            "options": {"expires": settings.billing.webhook_resend_seconds},
        },
        "billing-subscriptions-resend": {
            "task": billing_jobs.RESEND_SUBSCRIPTIONS,
            "schedule": settings.billing.subscription_resend_seconds,
            "options": {"expires": settings.billing.subscription_resend_seconds},
        },
        "webhooks-dispatch": {
            "task": webhooks_jobs.DISPATCH,
            "schedule": settings.webhooks.dispatch_seconds,
            "options": {"expires": settings.webhooks.dispatch_seconds},
        },
        "auth-keys-rotate": {
            "task": auth_jobs.ROTATE_KEYS,
            "schedule": settings.auth.rotation_check_minutes * 60,
        },
        "retention-run": {
            "task": retention_jobs.RUN,
            "schedule": crontab(minute=settings.retention.minute, hour=settings.retention.hour_utc),
        },
    }
