"""The Agents SDK's own spans, recorded as OpenTelemetry spans of the run's trace.

The SDK traces a run as a tree of its own (the run, each agent turn, model calls, tool calls,
handoffs), which by default goes to OpenAI's dashboard or nowhere (``OPENAI_TRACING``). With
``AGENTS_TRACING=otel`` and tracing on, ``install_sdk_tracing`` registers a processor that turns
each of them into an OpenTelemetry span: the SDK's trace under the span current when the run
started, each SDK span under its SDK parent. Names, models, token counts and tool names are
kept; prompts, replies and tool arguments never are.

The SDK's processors are process-global; so is the record of ours here.
"""

from __future__ import annotations

import threading
from typing import Any

from agents.tracing import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    GuardrailSpanData,
    HandoffSpanData,
    ResponseSpanData,
    Span,
    SpanData,
    Trace,
    TracingProcessor,
    add_trace_processor,
    set_trace_processors,
)
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

_installed = False


def install_sdk_tracing(*, keep_openai_export: bool) -> None:
    """Records the SDK's spans in OpenTelemetry from now on, in this process. Unless
    ``keep_openai_export``, the SDK's default processor (the export to OpenAI) is replaced."""
    global _installed
    processor = OtelTracingProcessor()
    if keep_openai_export:
        add_trace_processor(processor)
    else:
        set_trace_processors([processor])
    _installed = True


def sdk_tracing_installed() -> bool:
    """Whether runs must trace for ``install_sdk_tracing``'s processor (RunConfig)."""
    return _installed


class OtelTracingProcessor(TracingProcessor):
    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer: Tracer = trace.get_tracer(
            "switchboard.agents", tracer_provider=tracer_provider
        )
        # Open OpenTelemetry spans by the SDK's trace or span id (distinct prefixes); the SDK
        # calls back from whichever thread runs the agent.
        self._open: dict[str, trace.Span] = {}
        self._lock = threading.Lock()

    def on_trace_start(self, trace_: Trace) -> None:
        exported = trace_.export() or {}
        attributes: dict[str, AttributeValue] = {"agents.workflow": trace_.name}
        group = exported.get("group_id")
        if isinstance(group, str):
            attributes["agents.group_id"] = group
        # Under whatever is current: the run's task span on a worker.
        opened = self._tracer.start_span(f"agents.run {trace_.name}", attributes=attributes)
        with self._lock:
            self._open[trace_.trace_id] = opened

    def on_trace_end(self, trace_: Trace) -> None:
        with self._lock:
            opened = self._open.pop(trace_.trace_id, None)
        if opened is not None:
            opened.end()

    def on_span_start(self, span: Span[Any]) -> None:
        with self._lock:
            parent = self._open.get(span.parent_id or span.trace_id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        opened = self._tracer.start_span(_name(span.span_data), context=context)
        with self._lock:
            self._open[span.span_id] = opened

    def on_span_end(self, span: Span[Any]) -> None:
        with self._lock:
            opened = self._open.pop(span.span_id, None)
        if opened is None:
            return
        if opened.is_recording():
            opened.set_attributes(_attributes(span.span_data))
            error = span.error
            if error is not None:
                opened.set_status(Status(StatusCode.ERROR, error.get("message")))
        opened.end()

    def shutdown(self) -> None:
        with self._lock:
            left, self._open = list(self._open.values()), {}
        for opened in left:
            opened.end()

    def force_flush(self) -> None:
        """Spans go out through the OpenTelemetry provider's own processor."""


def _name(data: SpanData) -> str:
    if isinstance(data, AgentSpanData):
        return f"agents.agent {data.name}"
    if isinstance(data, FunctionSpanData):
        return f"agents.tool {data.name}"
    if isinstance(data, HandoffSpanData):
        return f"agents.handoff {data.from_agent} -> {data.to_agent}"
    if isinstance(data, GuardrailSpanData):
        return f"agents.guardrail {data.name}"
    return f"agents.{data.type}"


def _attributes(data: SpanData) -> dict[str, AttributeValue]:
    """What a span says, read when it ends (a model call's usage is known only then)."""
    found: dict[str, Any] = {}
    if isinstance(data, AgentSpanData):
        found["gen_ai.agent.name"] = data.name
    elif isinstance(data, FunctionSpanData):
        found["gen_ai.tool.name"] = data.name
    elif isinstance(data, HandoffSpanData):
        found["agents.handoff.from"] = data.from_agent
        found["agents.handoff.to"] = data.to_agent
    elif isinstance(data, GuardrailSpanData):
        found["agents.guardrail.triggered"] = data.triggered
    elif isinstance(data, GenerationSpanData):
        found["gen_ai.request.model"] = data.model
        found.update(_usage(data.usage))
    elif isinstance(data, ResponseSpanData) and data.response is not None:
        found["gen_ai.response.id"] = data.response.id
        found["gen_ai.response.model"] = data.response.model
        usage = data.response.usage
        if usage is not None:
            found.update(_usage(usage.model_dump()))
    return {key: value for key, value in found.items() if value is not None}


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    return {
        "gen_ai.usage.input_tokens": usage.get("input_tokens"),
        "gen_ai.usage.output_tokens": usage.get("output_tokens"),
    }
