"""Prometheus metrics of outbound webhooks, recorded by the webhooks workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "webhooks_attempts_total",
    "Delivery attempts by result: succeeded, or the error (http_status, timeout, ...).",
    ["result"],
)
DELIVERIES = Counter(
    "webhooks_deliveries_total",
    "Deliveries that reached a final state, by outcome (succeeded, failed).",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "webhooks_delivery_latency_seconds",
    "From an event's commit to the receiver's 2xx, retries included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 86400),
)
ATTEMPT_SECONDS = Histogram(
    "webhooks_attempt_seconds",
    "Duration of one attempt, from resolving the receiver's name to its answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES_PENDING = Gauge(
    "webhooks_retries_pending",
    "Deliveries that failed at least once and will be tried again, as the latest dispatch"
    " counted them.",
    multiprocess_mode="mostrecent",
)
ENDPOINTS_DISABLED = Gauge(
    "webhooks_endpoints_disabled",
    "Endpoints Switchboard disabled after failing for the whole failure window, as the latest"
    " dispatch counted them.",
    multiprocess_mode="mostrecent",
)
ENDPOINT_BUSY = Counter(
    "webhooks_endpoint_busy_total",
    "Deliveries put back because their endpoint had its most attempts in flight.",
)
