"""Agent runs, on the ``runs`` queue."""

from __future__ import annotations

from typing import Any

from switchboard.kit.db import DATABASE_UNAVAILABLE
from switchboard.runs import jobs
from switchboard.runs.backend import DatabaseToolBackend
from switchboard.runs.executor import RunExecutor
from switchboard.runs.sweep import SweepReport, sweep_runs
from workers.celery_app import celery_app, runtime, settings


def executor() -> RunExecutor:
    resources = runtime.resources
    agents = runtime.agents
    return RunExecutor(
        sessionmaker=resources.sessionmaker,
        redis=resources.redis,
        publisher=runtime.publisher,
        registry=agents.registry,
        run_config=agents.run_config,
        backend=DatabaseToolBackend(resources.sessionmaker, runtime.job_sender),
        settings=settings.runs,
        notices=runtime.cancel_notices,
        slots=runtime.run_slots,
        jobs=runtime.job_sender,
    )


# Postgres out of reach before the run was claimed: it is still queued, so try again soon.
# (Later failures are the executor's: it retries its final write, the sweep ends the rest.)
# The executor stops a run at RUNS_MAX_SECONDS and fails it with its code, timeout. Celery's
# limits come after that and its final write; they bind only a prefork pool (the thread pool
# ignores them), and a run they stop is failed by the sweep once its lease lapses.
RUN_TASK: dict[str, Any] = {
    "autoretry_for": DATABASE_UNAVAILABLE,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 10,
    "soft_time_limit": settings.runs.task_soft_time_limit,
    "time_limit": settings.runs.task_time_limit,
}


@celery_app.task(name=jobs.EXECUTE, **RUN_TASK)
def execute(run_id: str) -> str:
    """Runs the agent for ``run_id`` and publishes its events; the run's row holds the result."""
    return runtime.run(executor().execute(run_id))


@celery_app.task(name=jobs.RESUME, **RUN_TASK)
def resume(run_id: str) -> str:
    """Continues ``run_id`` from the state it stored when it stopped for tool approvals (or
    ends it, if it was cancelled while it waited)."""
    return runtime.run(executor().resume(run_id))


@celery_app.task(name=jobs.SWEEP)
def sweep() -> dict[str, int]:
    """Fails runs whose worker was lost and runs whose job never reached a worker."""
    resources = runtime.resources
    report: SweepReport = runtime.run(
        sweep_runs(
            resources.sessionmaker,
            resources.redis,
            runtime.publisher,
            settings.runs,
            slots=runtime.run_slots,
            jobs=runtime.job_sender,
        )
    )
    return {
        "suspected": report.suspected,
        "lost": report.lost,
        "expired": report.expired,
        "reclaimed": report.reclaimed,
        "approvals_expired": report.approvals_expired,
    }
