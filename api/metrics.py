"""Prometheus metrics of the API process and the ``/metrics`` exposition.

With ``PROMETHEUS_MULTIPROC_DIR`` set (as ``make dev`` and the deployment do), every process
writes its samples there and ``/metrics`` aggregates them, so several uvicorn workers report
one consistent set of series.

``API_METRICS_TOKEN`` set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (what
Prometheus sends with an ``authorization`` scrape setting). Unset, it is open in development
and test and answers 404 elsewhere, as if there were no such route.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from switchboard.kit.metrics import exposition_registry

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to the end of the response body, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests being handled right now.",
    ["method"],
    multiprocess_mode="livesum",
)


def metrics_endpoint(
    token: SecretStr | None, *, open_without_token: bool
) -> Callable[[Request], Awaitable[Response]]:
    expected = f"Bearer {token.get_secret_value()}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if expected is None:
            if not open_without_token:
                raise HTTPException(404, "Not Found")
        else:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise HTTPException(
                    401, "a valid metrics bearer token is required", {"WWW-Authenticate": "Bearer"}
                )
        return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)

    return metrics
