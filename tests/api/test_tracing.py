"""The app's tracing: none at all without OTel settings; with them, a server span per request
named by its route, no span for probes and /metrics, and no query string (stream tickets)."""

from __future__ import annotations

import uuid

import sqlalchemy.ext.asyncio
import structlog
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.main import create_app
from api.tracing import instrument_app
from switchboard.kit.db import SessionMaker
from switchboard.kit.logging import add_trace_ids
from switchboard.kit.tracing import tracing_on
from switchboard.settings import Settings
from tests.support.app import serving, use_test_transaction


async def test_without_otel_settings_nothing_is_instrumented(settings: Settings) -> None:
    assert not settings.otel.enabled
    app = create_app(settings)

    async with serving(app) as client:
        assert (await client.get("/health/live")).status_code == 200

    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert not tracing_on()
    assert add_trace_ids not in structlog.get_config()["processors"]
    assert not hasattr(sqlalchemy.ext.asyncio.create_async_engine, "__wrapped__")
    assert not hasattr(app.state.resources.redis, "_is_instrumented_by_opentelemetry")


async def test_a_request_span_names_the_route_and_keeps_no_query(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = use_test_transaction(create_app(settings), sessionmaker)
    instrument_app(app, tracer_provider=provider)
    try:
        async with serving(app) as client:
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            refused = await client.get(f"/api/v1/runs/{uuid.uuid4()}/stream?ticket=not-a-ticket")
    finally:
        FastAPIInstrumentor.uninstrument_app(app)

    # The layers around Starlette's stack still apply.
    assert refused.status_code == 401
    assert refused.headers["x-content-type-options"] == "nosniff"
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /api/v1/runs/{run_id}/stream"
    assert span.attributes is not None
    assert span.attributes["http.status_code"] == 401
    assert "not-a-ticket" not in repr(dict(span.attributes))
