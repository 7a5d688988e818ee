"""Retention jobs on the maintenance queue: the daily clean-up and tenant data deletion."""

from __future__ import annotations

import uuid

from switchboard.kit.db import DATABASE_UNAVAILABLE
from switchboard.retention import jobs
from switchboard.retention.service import run_retention
from switchboard.retention.tenant_data import purge_tenant
from workers.celery_app import celery_app, runtime, settings


@celery_app.task(name=jobs.RUN)
def run() -> dict[str, int]:
    """Deletes what outlived its window, in bounded batches; counts per target."""
    resources = runtime.resources
    report = runtime.run(
        run_retention(
            resources.sessionmaker,
            resources.redis,
            settings.retention,
            buffer_ttl_seconds=settings.runs.buffer_ttl_seconds,
        )
    )
    return report.counts


@celery_app.task(
    name=jobs.PURGE_TENANT,
    autoretry_for=DATABASE_UNAVAILABLE,
    retry_backoff=5,
    max_retries=10,
)
def purge(deletion_id: str) -> dict[str, int]:
    """Deletes all of one tenant's data, as its owner asked; safe to run again."""
    resources = runtime.resources
    return runtime.run(
        purge_tenant(
            resources.sessionmaker,
            resources.redis,
            uuid.UUID(deletion_id),
            batch_size=settings.retention.batch_size,
        )
    )
