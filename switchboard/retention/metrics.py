"""Prometheus metrics of the clean-up."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELETED = Counter(
    "retention_deleted_rows_total",
    "Rows (and Redis run buffers) deleted by retention, by target.",
    ["target"],
)
LAST_RUN = Gauge(
    "retention_last_run_timestamp_seconds",
    "When the scheduled clean-up last finished.",
    multiprocess_mode="max",
)
