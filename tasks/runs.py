"""Agent runs, on the ``runs`` queue."""

from __future__ import annotations

from functools import cache

from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.runs.backend import DatabaseToolBackend
from switchboard.runs.events import EventPublisher
from switchboard.runs.executor import RunExecutor
from workers.celery_app import celery_app, settings
from workers.runtime import get_runtime


@cache
def agent_runtime() -> AgentRuntime:
    return create_agent_runtime(settings.openai, settings.offline)


def executor() -> RunExecutor:
    resources = get_runtime().resources
    runtime = agent_runtime()
    return RunExecutor(
        sessionmaker=resources.sessionmaker,
        redis=resources.redis,
        publisher=EventPublisher(
            resources.redis,
            max_events=settings.runs.buffer_max_events,
            ttl_seconds=settings.runs.buffer_ttl_seconds,
        ),
        registry=runtime.registry,
        run_config=runtime.run_config,
        backend=DatabaseToolBackend(resources.sessionmaker),
        settings=settings.runs,
    )


@celery_app.task(name="runs.execute")
def execute(run_id: str) -> str:
    """Runs the agent for ``run_id`` and publishes its events; the run's row holds the result."""
    return get_runtime().run(executor().execute(run_id))
