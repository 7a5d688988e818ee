"""Tasks about the worker fleet itself."""

from __future__ import annotations

import os
from typing import Any

from switchboard.kit.health import check_readiness
from switchboard.ops import jobs
from switchboard.ops.service import record_heartbeat
from workers.celery_app import celery_app, runtime


@celery_app.task(name=jobs.PING, ignore_result=False)
def ping() -> str:
    """Round trip through the broker; answers without touching any other service."""
    return "pong"


@celery_app.task(name=jobs.CHECK, ignore_result=False)
def check() -> dict[str, Any]:
    """Readiness as this worker process sees it: Postgres, Redis and the broker."""
    readiness = runtime.run(check_readiness(runtime.resources))
    return {"pid": os.getpid(), **readiness.model_dump()}


@celery_app.task(name=jobs.HEARTBEAT)
def heartbeat() -> None:
    """Scheduled by beat; its timestamp in Redis shows beat, broker and workers are alive."""
    runtime.run(record_heartbeat(runtime.resources.redis))
