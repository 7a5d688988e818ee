"""Prometheus metrics of runs (recorded by workers) and of their streams (recorded by the API)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RUNS_STARTED = Counter("runs_started_total", "Runs a worker began, by entry agent.", ["agent"])
RUNS_FINISHED = Counter("runs_finished_total", "Runs that reached a final status.", ["status"])
RUNS_FAILED = Counter(
    "runs_failed_total", "Runs that failed, by the code of their error.", ["code"]
)
RUNS_ACTIVE = Gauge(
    "runs_active", "Runs executing in this worker process now.", multiprocess_mode="livesum"
)
BUSY_CHATS = Counter(
    "runs_busy_conversation_chats_total",
    "Chats into a conversation that had a queued or running run, by multitask_strategy.",
    ["strategy"],
)
APPROVALS_REQUESTED = Counter(
    "runs_approvals_requested_total", "Tool calls a run stopped on for a person's approval."
)
RUNS_WAITING = Gauge(
    "runs_waiting_for_approval",
    "Runs waiting for tool approvals (requires_action), as the latest sweep counted them.",
    multiprocess_mode="mostrecent",
)
APPROVAL_LATENCY = Histogram(
    "runs_approval_latency_seconds",
    "From a run's pause for approvals to the decision on its last pending call.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 86400),
)
QUEUE_WAIT = Histogram(
    "runs_queue_wait_seconds",
    "From the run's creation to a worker claiming it.",
    buckets=LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "runs_time_to_first_token_seconds",
    "From the run's creation to its first message delta being published.",
    buckets=LATENCY_BUCKETS,
)
EVENTS_PUBLISHED = Counter("runs_events_published_total", "Run events published.", ["event"])
PUBLISH_FAILURES = Counter(
    "runs_event_publish_failures_total", "Publishes that failed and were held for a retry."
)

STREAMS_OPEN = Gauge(
    "runs_streams_open", "SSE streams open in this API process.", multiprocess_mode="livesum"
)
EVENTS_RELAYED = Counter("runs_events_relayed_total", "Run events sent to SSE clients.")
STREAMS_INTERRUPTED = Counter(
    "runs_streams_interrupted_total",
    "Streams ended early with stream.error (events_lost, stream_failed).",
    ["reason"],
)

# Plan limits (recorded by the API; the sweep sets runs_admitted). No tenant label: the
# series would grow with the tenants.
LIMIT_REJECTIONS = Counter(
    "runs_limit_rejections_total",
    "Chats and streams refused by a plan limit, by limit and plan.",
    ["limit", "plan"],
)
ADMISSION_SECONDS = Histogram(
    "runs_admission_seconds",
    "Time to admit or refuse a chat against its tenant's plan (plan lookup and Redis).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
RUNS_ADMITTED = Gauge(
    "runs_admitted",
    "Runs holding a concurrency slot across all tenants, as the latest sweep counted them.",
    multiprocess_mode="mostrecent",
)
SLOTS_RECLAIMED = Counter(
    "runs_slots_reclaimed_total",
    "Concurrency slots the sweep took back from runs that ended without giving them back.",
)
