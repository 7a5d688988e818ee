"""The Agents SDK's spans as OpenTelemetry spans: the same tree under the span current when the
run started, names, models and token counts kept, prompts, replies and tool arguments not."""

from __future__ import annotations

import pytest
from agents.tracing import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    HandoffSpanData,
    SpanData,
)
from agents.tracing.spans import SpanImpl
from agents.tracing.traces import TraceImpl
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from switchboard.agents import tracing
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.providers import run_config
from switchboard.agents.settings import OpenAISettings
from switchboard.agents.tracing import OtelTracingProcessor

SECRET = "the user's own words"


def test_the_sdk_tree_is_recorded_under_the_current_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    processor = OtelTracingProcessor(provider)

    def sdk_span(data: SpanData, parent: SpanImpl[SpanData] | None = None) -> SpanImpl[SpanData]:
        parent_id = parent.span_id if parent is not None else None
        return SpanImpl(run.trace_id, None, parent_id, processor, data, None)

    with provider.get_tracer("test").start_as_current_span("run/runs.execute") as task:
        run = TraceImpl("switchboard", None, "conversation-1", None, processor)
        run.start()
        agent = sdk_span(AgentSpanData(name="triage"))
        agent.start()
        model = sdk_span(
            GenerationSpanData(
                input=[{"role": "user", "content": SECRET}],
                model="gpt-test",
                usage={"input_tokens": 7, "output_tokens": 3},
            ),
            agent,
        )
        model.start()
        model.finish()
        tool = sdk_span(FunctionSpanData(name="lookup", input=SECRET, output=SECRET), agent)
        tool.start()
        tool.set_error({"message": "the tool failed", "data": None})
        tool.finish()
        handoff = sdk_span(HandoffSpanData(from_agent="triage", to_agent="billing"), agent)
        handoff.start()
        handoff.finish()
        agent.finish()
        run.finish()

    spans: dict[str, ReadableSpan] = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {
        "run/runs.execute",
        "agents.run switchboard",
        "agents.agent triage",
        "agents.generation",
        "agents.tool lookup",
        "agents.handoff triage -> billing",
    }

    def parent(name: str) -> int | None:
        context = spans[name].parent
        return context.span_id if context is not None else None

    assert parent("agents.run switchboard") == task.get_span_context().span_id
    assert parent("agents.agent triage") == spans["agents.run switchboard"].context.span_id
    agent_id = spans["agents.agent triage"].context.span_id
    for child in ("agents.generation", "agents.tool lookup", "agents.handoff triage -> billing"):
        assert parent(child) == agent_id
    assert dict(spans["agents.generation"].attributes or {}) == {
        "gen_ai.request.model": "gpt-test",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
    }
    assert spans["agents.run switchboard"].attributes == {
        "agents.workflow": "switchboard",
        "agents.group_id": "conversation-1",
    }
    assert spans["agents.tool lookup"].status.status_code is StatusCode.ERROR
    assert all(SECRET not in repr(dict(span.attributes or {})) for span in spans.values())


def test_runs_trace_for_the_processor_once_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = OfflineModelProvider()
    assert run_config(provider, OpenAISettings()).tracing_disabled

    monkeypatch.setattr(tracing, "_installed", True)
    traced = run_config(provider, OpenAISettings())
    assert not traced.tracing_disabled
    assert traced.tracing is None  # no key: nothing goes to OpenAI
