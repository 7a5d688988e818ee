"""OpenTelemetry tracing of one process: its provider and exporter, the instrumentation of its
database engines, Redis clients and outgoing HTTP, and the span helpers domain code uses.

Tracing is off unless the ``OTEL_*`` settings ask for it (``OtelSettings.enabled``). Off,
nothing is installed or even imported beyond the API: no instrumentation wraps anything, and
``span`` hands back one shared no-op context. The web and queue frameworks are instrumented by
their adapters (``api/``, ``workers/``), which call ``setup_tracing`` once per process, after
any fork.

OpenTelemetry's provider is process-global by design; so is the record of it here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from redis.asyncio import Redis

from switchboard.settings import OtelSettings, TracesExporter

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult

log = structlog.get_logger("switchboard.tracing")

_tracer = trace.get_tracer("switchboard")
_provider: TracerProvider | None = None
_OFF: AbstractContextManager[Any] = nullcontext(trace.INVALID_SPAN)


def setup_tracing(settings: OtelSettings, *, service: str) -> bool:
    """Installs tracing in this process if the settings ask for it, once; whether it is on.

    ``service`` names the process's spans unless OTEL_SERVICE_NAME (or service.name in
    OTEL_RESOURCE_ATTRIBUTES) does. The sampler is the SDK's, from OTEL_TRACES_SAMPLER."""
    global _provider
    if _provider is not None:
        return True
    if not settings.enabled:
        return False
    # Imported here: a process that does not trace loads none of the SDK, the exporter
    # (requests, protobuf) or the instrumentations.
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    provider = TracerProvider(resource=_resource(service), sampler=_open_parents_only())
    if settings.traces_exporter is TracesExporter.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The URL is given, not left to the SDK, which reads the process environment only:
        # the settings may come from .env.
        exporter = OTLPSpanExporter(endpoint=settings.traces_url)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # Engines made from now on (kit/db.py looks create_async_engine up at each call) and every
    # httpx client. Redis clients are instrumented one by one (instrument_redis), so that the
    # broker's own traffic (kombu's polling, acknowledgements, task events) makes no spans.
    # The instrumentation declares SQLAlchemy below 2.1; it uses only the engine's event hooks,
    # which 2.1 keeps (tests/e2e/test_tracing.py sees its spans).
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    log.info("tracing.on", service=service)
    return True


def tracing_on() -> bool:
    """Whether ``setup_tracing`` installed tracing in this process."""
    return _provider is not None


def shutdown_tracing() -> None:
    """Exports the spans still buffered and stops the exporter; at process exit."""
    if _provider is not None:
        _provider.shutdown()


def instrument_redis(client: Redis) -> None:
    """Traces ``client``'s commands and pipelines while tracing is on."""
    if _provider is not None:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(client, tracer_provider=_provider)


def span(name: str, **attributes: AttributeValue) -> AbstractContextManager[trace.Span]:
    """A span around a block, current inside it, ending with it (an exception is recorded):
    ``with span("runs.claim", run_id=run_id) as claim: ...``. Off, one shared no-op context.

    For steps of a request or a run, never for each event or token of a stream."""
    if _provider is None:
        return _OFF
    return _tracer.start_as_current_span(name, attributes=attributes)


def start_span(name: str, **attributes: AttributeValue) -> trace.Span:
    """A span the caller ends (``.end()``), child of the current one and never current itself:
    for a stretch that ends in another callback, such as the wait for a first token. Off, the
    invalid span, whose ``end`` does nothing."""
    if _provider is None:
        return trace.INVALID_SPAN
    return _tracer.start_span(name, attributes=attributes)


def untraced() -> AbstractContextManager[Any]:
    """No instrumentation span (SQL, Redis, HTTP) for what runs inside: for calls made once per
    streamed event, which would otherwise put a span per token in the trace."""
    if _provider is None:
        return _OFF
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def _open_parents_only() -> Sampler:
    """The SDK's sampler (OTEL_TRACES_SAMPLER), except that a span whose parent has ended is
    dropped. Such a span comes from a task that outlived the request or run it started in (a
    process-wide listener or renewer, started by the first stream a process serves), which
    would otherwise add spans to that one trace for as long as the process lives."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    configured = TracerProvider(shutdown_on_exit=False).sampler  # as the SDK reads it
    dropped = SamplingResult(Decision.DROP)

    class OpenParentsOnly(Sampler):
        def should_sample(
            self, parent_context: Context | None, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context)
            if isinstance(parent, ReadableSpan) and parent.end_time is not None:
                return dropped
            return configured.should_sample(parent_context, *args, **kwargs)

        def get_description(self) -> str:
            return f"OpenParentsOnly{{{configured.get_description()}}}"

    return OpenParentsOnly()


def _resource(service: str) -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without a name
    # there the SDK says unknown_service, and the process's own name applies.
    detected = Resource.create()
    name = detected.attributes.get(SERVICE_NAME)
    if isinstance(name, str) and not name.startswith("unknown_service"):
        return detected
    return detected.merge(Resource({SERVICE_NAME: service}))
