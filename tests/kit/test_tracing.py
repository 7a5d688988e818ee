"""When tracing is on, the helpers domain code uses when it is off, and trace ids in log lines.

Nothing here installs tracing in the test process: a provider is process-global, and the rest
of the session must run untraced. Processes that trace are tests/e2e/test_tracing.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from switchboard.kit.logging import add_trace_ids, configure_logging
from switchboard.kit.redis import create_redis
from switchboard.kit.tracing import span, start_span, tracing_on, untraced
from switchboard.settings import OtelSettings, Settings, SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_TRACES_EXPORTER": "none"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_variables_ask(
    env: dict[str, str], enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().otel.enabled is enabled


def test_spans_go_to_the_traces_path_of_the_endpoint() -> None:
    assert OtelSettings().traces_url == "http://localhost:4318/v1/traces"
    base = OtelSettings(exporter_otlp_endpoint="http://jaeger:4318")
    assert base.traces_url == "http://jaeger:4318/v1/traces"
    full = base.model_copy(update={"exporter_otlp_traces_endpoint": "https://c.example/in"})
    assert full.traces_url == "https://c.example/in"


def test_an_endpoint_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317")
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        load_settings()


async def test_off_the_helpers_change_nothing(settings: Settings) -> None:
    assert not tracing_on()
    with span("runs.claim", run_id="r") as claimed:
        assert claimed is trace.INVALID_SPAN
    assert span("a") is span("b")
    assert start_span("runs.first_token") is trace.INVALID_SPAN
    with untraced():
        pass
    client = create_redis(str(settings.redis.url), settings.redis)
    try:
        assert not hasattr(client, "_is_instrumented_by_opentelemetry")
    finally:
        await client.aclose()


@pytest.fixture
def local_tracer() -> trace.Tracer:
    """A tracer of a provider of its own, never installed: spans become current all the same."""
    return TracerProvider().get_tracer("test")


def test_log_lines_carry_the_ids_of_the_current_sampled_span(local_tracer: trace.Tracer) -> None:
    event: dict[str, Any] = {"event": "x"}
    assert add_trace_ids(None, "info", event) == {"event": "x"}

    with local_tracer.start_as_current_span("request") as current:
        add_trace_ids(None, "info", event)
    context = current.get_span_context()
    assert event["trace_id"] == f"{context.trace_id:032x}"
    assert event["span_id"] == f"{context.span_id:016x}"

    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with unsampled.start_as_current_span("dropped"):
        assert "trace_id" not in add_trace_ids(None, "info", {})


@pytest.fixture
def restored_logging(settings: Settings) -> Iterator[None]:
    yield
    configure_logging(settings.log, settings.environment, service="test")


@pytest.mark.usefixtures("restored_logging")
def test_the_trace_id_processor_is_installed_only_with_tracing(settings: Settings) -> None:
    configure_logging(settings.log, settings.environment, service="test")
    assert add_trace_ids not in structlog.get_config()["processors"]
    configure_logging(settings.log, settings.environment, service="test", trace_ids=True)
    assert add_trace_ids in structlog.get_config()["processors"]


def test_no_span_is_recorded_under_a_parent_that_has_ended() -> None:
    """A process-wide task started inside the first stream's request would otherwise add its
    spans to that request's trace for as long as the process lives."""
    from switchboard.kit.tracing import _open_parents_only

    tracer = TracerProvider(sampler=_open_parents_only()).get_tracer("test")
    with (
        tracer.start_as_current_span("request") as request,
        tracer.start_as_current_span("during") as during,
    ):
        assert during.is_recording()
    after = tracer.start_span("after", context=trace.set_span_in_context(request))
    assert not after.is_recording()
    assert tracer.start_span("another root").is_recording()
