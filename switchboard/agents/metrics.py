"""Prometheus metrics of the calls agents make to the model provider (recorded by workers)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MODEL_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

MODEL_CALLS = Counter(
    "model_calls_total",
    "Calls to the model provider, by model, outcome (ok, error, cancelled) and the provider's"
    " HTTP status (timeout or connection when no answer came).",
    ["model", "outcome", "status"],
)
MODEL_TIME_TO_FIRST_TOKEN = Histogram(
    "model_time_to_first_token_seconds",
    "From a call to the provider to its first output (a text or a function call's arguments).",
    ["model"],
    buckets=MODEL_LATENCY_BUCKETS,
)
MODEL_CALL_SECONDS = Histogram(
    "model_call_seconds",
    "From a call to the provider to the end of its answer, for calls that succeeded.",
    ["model"],
    buckets=MODEL_LATENCY_BUCKETS,
)
MODEL_RETRIES = Counter(
    "model_retries_total",
    "Requests to the provider that retry an earlier attempt (after a 408, 409, 429, 5xx or a"
    " dropped connection).",
)
