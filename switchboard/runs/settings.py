"""Settings of agent runs and their event streams: ``RUNS_*`` variables."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

# What runs.execute may take beyond its run's own limit: claiming the run, and writing its end
# while Postgres is briefly away (the executor's retries). Publishing the end has its own
# bound, RUNS_PUBLISH_RETRY_SECONDS.
FINISH_MARGIN_SECONDS = 30
# Between Celery's soft limit (an exception in the task) and its hard one (the process killed).
HARD_MARGIN_SECONDS = 30


class RunsSettings(BaseModel):
    max_message_chars: int = Field(
        32_000, ge=1, description="Longest chat message accepted; longer ones get 413."
    )
    buffer_max_events: int = Field(
        20_000, ge=100, description="Events kept per run for replay (a capped Redis stream)."
    )
    buffer_ttl_seconds: int = Field(
        3600, ge=60, description="How long a run's replay buffer outlives its last event."
    )
    ping_seconds: int = Field(
        10, ge=1, le=15, description="SSE comment sent on an idle stream at least this often."
    )
    send_timeout_seconds: float = Field(
        30, gt=0, description="A stream whose client stops reading for this long is closed."
    )
    max_seconds: int = Field(
        600,
        ge=1,
        description="A run still going after this long is stopped and fails with the code"
        " timeout; its partial reply is not kept.",
    )
    cancel_poll_seconds: float = Field(
        2,
        gt=0,
        description="How often a worker reads a run's cancel flag, in case its cancel notice"
        " (pub/sub, acted on at once) was missed.",
    )
    history_messages: int = Field(
        50,
        ge=0,
        le=1000,
        description="Earlier messages of the conversation sent to the agent (the latest ones).",
    )
    lease_seconds: int = Field(
        15,
        ge=2,
        description="A running run's worker lease; the sweep fails runs whose lease lapsed.",
    )
    sweep_seconds: float = Field(
        10, gt=0, description="How often beat sweeps for lost and never-started runs."
    )
    queue_timeout_seconds: int = Field(
        900, ge=60, description="A run still queued after this long is failed (job lost)."
    )
    approval_timeout_seconds: int = Field(
        3600,
        ge=60,
        description="A run waiting this long for tool approvals fails with approval_expired;"
        " keep it at most RUNS_BUFFER_TTL_SECONDS so the events before the pause stay"
        " replayable.",
    )
    publish_retry_seconds: float = Field(
        30, ge=0, description="How long a finished run's worker retries events Redis refused."
    )
    limits_enabled: bool = Field(
        True,
        description="Enforce each plan's runs per minute, concurrent runs, monthly tokens and"
        " open streams per user; off only for measurements.",
    )
    plan_cache_seconds: float = Field(
        5, ge=0, description="How long an API process reuses a tenant's plan limits."
    )
    usage_cache_seconds: float = Field(
        5,
        ge=1,
        description="How long a tenant's tokens this month, read from Postgres, are kept in"
        " Redis (a finished run adds its tokens at once).",
    )
    concurrency_retry_seconds: int = Field(
        2, ge=1, description="Retry-After of a chat refused for the tenant's concurrent runs."
    )
    slot_grace_seconds: int = Field(
        30,
        ge=5,
        description="A run slot whose run is not in Postgres is kept this long (its write may"
        " still be committing) before the sweep takes it back.",
    )
    stream_slot_seconds: int = Field(
        45,
        ge=6,
        description="An open stream's slot lapses this long after its API process last renewed"
        " it (every third of it), so a killed process frees its slots.",
    )
    streams_per_ticket: int = Field(
        2,
        ge=1,
        description="Streams one stream ticket may hold open at once (a browser's reconnect may"
        " overlap the stream it replaces).",
    )

    @property
    def task_soft_time_limit(self) -> int:
        """Celery's soft limit of runs.execute: the run's own limit, then time to end it."""
        return self.max_seconds + FINISH_MARGIN_SECONDS + math.ceil(self.publish_retry_seconds)

    @property
    def task_time_limit(self) -> int:
        """Celery's hard limit of runs.execute: past it, a prefork child is killed."""
        return self.task_soft_time_limit + HARD_MARGIN_SECONDS
