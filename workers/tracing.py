"""Tracing of Celery processes, connected by ``workers.signals`` when tracing is on.

A worker installs tracing once per process, after any fork: a thread-pool or solo worker at
``worker_init``, each child of a prefork pool at ``worker_process_init`` (the parent runs no
task). Then the official Celery instrumentation makes a span per task run (``run/<task>``),
child of the trace context the message carries, and one per send (``apply_async/<task>``)
that puts the context in the message.

A process that runs no task and sends them by name (the API) is traced here instead: the
instrumentation finds a sent task in the process's task registry, where such a process has
none, and would open a send span it never closes. Every message also carries the time it was
sent, from which the worker records ``queue_wait/<task>``: from the send to the start of the run.
"""

from __future__ import annotations

import time
from typing import Any

from celery import signals
from celery.app.task import Task
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.utils.dispatch import Signal
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from switchboard.agents.providers import tracing_disabled
from switchboard.agents.settings import AgentsTracing
from switchboard.agents.tracing import install_sdk_tracing
from switchboard.kit.tracing import setup_tracing, shutdown_tracing, tracing_on
from switchboard.settings import Settings

SENT_AT_HEADER = "sent_at_ns"
# Sends whose broker publish raised never reach after_task_publish; past this many open ones
# (a broker outage), they are dropped rather than kept for ever.
_MAX_OPEN_SENDS = 1000

_tracer = trace.get_tracer("switchboard.workers")


def connect(settings: Settings) -> None:
    """Connects the receivers below; each has a ``dispatch_uid``, so a second call adds none."""
    tracing = _CeleryTracing(settings)
    receivers: list[tuple[Signal, Any]] = [
        (signals.worker_init, tracing.start_worker),
        (signals.worker_process_init, tracing.start_child),
        (signals.before_task_publish, tracing.open_send),
        (signals.after_task_publish, tracing.close_send),
        (signals.task_prerun, record_queue_wait),
        # After workers.signals's own receivers: what the runtime's shutdown traces goes out.
        (signals.worker_process_shutdown, tracing.stop),
        (signals.worker_shutdown, tracing.stop),
    ]
    for signal, receiver in receivers:
        signal.connect(
            receiver, weak=False, dispatch_uid=f"switchboard.tracing.{receiver.__name__}"
        )


class _CeleryTracing:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service = "switchboard-worker"
        self._instrumented = False
        self._sends: dict[str, trace.Span] = {}

    def start_worker(self, sender: Any = None, **_: Any) -> None:
        queues = sorted(sender.app.amqp.queues.consume_from) if sender is not None else []
        # One queue, one kind of worker: switchboard-worker-runs, switchboard-worker-webhooks.
        if len(queues) == 1:
            self._service = f"switchboard-worker-{queues[0]}"
        if sender is None or not issubclass(get_implementation(sender.pool_cls), PreforkPool):
            self._start()

    def start_child(self, **_: Any) -> None:
        self._start()

    def _start(self) -> None:
        if not setup_tracing(self._settings.otel, service=self._service):
            return
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
        self._instrumented = True
        if self._settings.agents.tracing is AgentsTracing.otel:
            install_sdk_tracing(keep_openai_export=not tracing_disabled(self._settings.openai))

    def stop(self, **_: Any) -> None:
        shutdown_tracing()

    def open_send(
        self,
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        **_: Any,
    ) -> None:
        if headers is None or not tracing_on():
            return
        headers[SENT_AT_HEADER] = time.time_ns()
        if self._instrumented:
            return  # the instrumentation opens the span and carries the context
        task_id = headers.get("id")
        if not isinstance(task_id, str):
            return
        send = _tracer.start_span(
            f"apply_async/{sender}",
            kind=SpanKind.PRODUCER,
            attributes={
                "celery.action": "apply_async",
                "celery.task_name": str(sender),
                "messaging.message.id": task_id,
                "messaging.destination": routing_key or "",
            },
        )
        propagate.inject(headers, context=trace.set_span_in_context(send))
        if len(self._sends) >= _MAX_OPEN_SENDS:
            self._sends.clear()
        self._sends[task_id] = send

    def close_send(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers is None or not self._sends:
            return
        send = self._sends.pop(headers.get("id", ""), None)
        if send is not None:
            send.end()


def record_queue_wait(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    """A span from the message's send to now, the start of its run, in the sender's trace."""
    if not tracing_on():
        return
    request = task.request
    sent = request.get(SENT_AT_HEADER)
    if not isinstance(sent, int):
        return
    carrier = {
        key: value
        for key in ("traceparent", "tracestate")
        if isinstance(value := request.get(key), str)
    }
    now = time.time_ns()
    delivery = request.delivery_info or {}
    waited = _tracer.start_span(
        f"queue_wait/{task.name}",
        context=propagate.extract(carrier),
        # Another host's clock may run ahead of this one.
        start_time=min(sent, now),
        attributes={
            "celery.task_name": task.name,
            "messaging.message.id": task_id,
            "messaging.destination": str(delivery.get("routing_key") or ""),
        },
    )
    waited.end(end_time=now)
