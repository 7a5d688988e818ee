"""Prometheus metrics of billing: usage reports, usage thresholds and Stripe webhooks."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

USAGE_REPORTED = Counter("billing_usage_reported_tokens_total", "Tokens reported to Stripe.")
USAGE_REPORT_FAILURES = Counter(
    "billing_usage_report_failures_total", "Usage batches whose report failed (retried later)."
)
WEBHOOK_EVENTS = Counter(
    "billing_webhook_events_total",
    "Stripe webhook events by type and result (received, duplicate, applied, stale, ignored,"
    " failed).",
    ["type", "result"],
)
USAGE_THRESHOLDS = Counter(
    "billing_usage_thresholds_total",
    "Tenants that reached a share (percent) of their plan's monthly tokens, once per month each.",
    ["percent"],
)
WEBHOOK_LAG = Histogram(
    "billing_webhook_processing_lag_seconds",
    "From a webhook's arrival to the end of its processing.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
