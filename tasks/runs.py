"""Agent runs, on the ``runs`` queue."""

from __future__ import annotations

import os
import threading
from functools import cache

from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.kit.db import DATABASE_UNAVAILABLE
from switchboard.runs.backend import DatabaseToolBackend
from switchboard.runs.cancel import CancelNotices
from switchboard.runs.events import EventPublisher
from switchboard.runs.executor import RunExecutor
from switchboard.runs.sweep import SweepReport, sweep_runs
from workers.celery_app import celery_app, settings
from workers.runtime import get_runtime


@cache
def agent_runtime() -> AgentRuntime:
    return create_agent_runtime(settings.openai, settings.offline)


def publisher() -> EventPublisher:
    return EventPublisher(
        get_runtime().resources.redis,
        max_events=settings.runs.buffer_max_events,
        ttl_seconds=settings.runs.buffer_ttl_seconds,
    )


_notices: dict[int, CancelNotices] = {}
_notices_lock = threading.Lock()


def cancel_notices() -> CancelNotices:
    """One listener per worker process (and per fork of it)."""
    with _notices_lock:
        pid = os.getpid()
        if pid not in _notices:
            _notices[pid] = CancelNotices(get_runtime().resources.redis)
        return _notices[pid]


def executor() -> RunExecutor:
    resources = get_runtime().resources
    runtime = agent_runtime()
    return RunExecutor(
        sessionmaker=resources.sessionmaker,
        redis=resources.redis,
        publisher=publisher(),
        registry=runtime.registry,
        run_config=runtime.run_config,
        backend=DatabaseToolBackend(resources.sessionmaker),
        settings=settings.runs,
        notices=cancel_notices(),
    )


# Postgres out of reach before the run was claimed: it is still queued, so try again soon.
# (Later failures are the executor's: it retries its final write, the sweep ends the rest.)
@celery_app.task(
    name="runs.execute",
    autoretry_for=DATABASE_UNAVAILABLE,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=10,
)
def execute(run_id: str) -> str:
    """Runs the agent for ``run_id`` and publishes its events; the run's row holds the result."""
    return get_runtime().run(executor().execute(run_id))


@celery_app.task(name="runs.sweep")
def sweep() -> dict[str, int]:
    """Fails runs whose worker was lost and runs whose job never reached a worker."""
    resources = get_runtime().resources
    report: SweepReport = get_runtime().run(
        sweep_runs(resources.sessionmaker, resources.redis, publisher(), settings.runs)
    )
    return {"suspected": report.suspected, "lost": report.lost, "expired": report.expired}
