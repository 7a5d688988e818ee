"""A server span per request, from the official FastAPI instrumentation, when tracing is on.

Probes and /metrics are left out, as is the instrumentation's span per ASGI message: a stream
of 1,500 events would otherwise make 1,500 spans. A stream's request span lasts as long as the
stream, which makes it the relay's span."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Span, TracerProvider

# Regular expressions searched in the request's URL (OTEL_PYTHON_FASTAPI_EXCLUDED_URLS adds).
EXCLUDED_URLS = ("/health/live", "/health/ready", "/metrics")
_QUERY_ATTRIBUTES = ("http.url", "url.full")


def instrument_app(app: FastAPI, *, tracer_provider: TracerProvider | None = None) -> None:
    """Before the app's first request; ``tracer_provider``: the process's, unless given."""
    # Imported here: an API that does not trace loads no instrumentation.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    configured = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS", ""
    )
    excluded = [*EXCLUDED_URLS, *(url.strip() for url in configured.split(",") if url.strip())]
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=",".join(excluded),
        exclude_spans=["receive", "send"],
        server_request_hook=_without_query,
        tracer_provider=tracer_provider,
    )


def _without_query(span: Span, scope: dict[str, Any]) -> None:
    # Stream tickets travel in the query string; like the access log, traces keep none.
    if not scope.get("query_string") or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _QUERY_ATTRIBUTES:
        url = attributes.get(name)
        if isinstance(url, str):
            span.set_attribute(name, url.partition("?")[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")
