"""Every periodic task of the system, in one place. Times are UTC."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from switchboard.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "system-heartbeat": {
            "task": "system.heartbeat",
            "schedule": settings.beat.heartbeat_seconds,
            # A heartbeat nobody ran in time is stale; do not let them pile up behind an outage.
            "options": {"expires": max(settings.beat.heartbeat_seconds, 30.0)},
        },
        "runs-sweep": {
            "task": "runs.sweep",
            "schedule": settings.runs.sweep_seconds,
            "options": {"expires": settings.runs.sweep_seconds},
        },
        "billing-usage-report": {
            "task": "billing.usage.report",
            "schedule": settings.billing.report_seconds,
            # A report that waited past the next one is redundant: the next one sends it all.
            "options": {"expires": settings.billing.report_seconds},
        },
        "billing-webhooks-resend": {
            "task": "billing.webhooks.resend",
            "schedule": settings.billing.webhook_resend_seconds,
            "options": {"expires": settings.billing.webhook_resend_seconds},
        },
        "billing-subscriptions-resend": {
            "task": "billing.subscriptions.resend",
            "schedule": settings.billing.subscription_resend_seconds,
            "options": {"expires": settings.billing.subscription_resend_seconds},
        },
        "auth-keys-rotate": {
            "task": "auth.keys.rotate",
            "schedule": settings.auth.rotation_check_minutes * 60,
        },
        "retention-run": {
            "task": "retention.run",
            "schedule": crontab(minute=settings.retention.minute, hour=settings.retention.hour_utc),
        },
    }
