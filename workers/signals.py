"""Worker lifecycle and task context: logging, request ids, metrics, failure records, and
tracing when it is on (``workers.tracing``).

Celery's signals are process-wide, so ``connect`` is called once, by ``workers.celery_app``;
each receiver has a ``dispatch_uid``, so a second call connects nothing twice.
"""

from __future__ import annotations

import sys
import traceback as tb
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from celery import signals
from celery.app.task import Task
from celery.utils.dispatch import Signal
from prometheus_client import start_http_server

from switchboard.kit.logging import configure_logging
from switchboard.kit.metrics import exposition_registry
from switchboard.ops.schemas import TaskFailureCreate
from switchboard.ops.service import record_task_failure
from workers import metrics, tracing
from workers.metrics import QueueLengths
from workers.runtime import WorkerRuntime

log = structlog.get_logger("switchboard.worker")

REQUEST_ID_HEADER = "request_id"


def connect(runtime: WorkerRuntime, *, queues: Sequence[str]) -> None:
    """Connects every receiver below; ``queues`` are the ones whose lengths /metrics shows."""
    lifecycle = _Lifecycle(runtime, tuple(queues))
    receivers: list[tuple[Signal, Callable[..., None]]] = [
        (signals.setup_logging, lifecycle.setup_logging),
        (signals.worker_ready, lifecycle.serve_metrics),
        (signals.after_task_publish, _count_sent),
        (signals.task_prerun, _count_started),
        (signals.task_postrun, _time_task),
        (signals.task_success, _count_success),
        (signals.task_retry, _count_retry),
        (signals.before_task_publish, _propagate_request_id),
        (signals.task_prerun, _bind_task_context),
        (signals.task_postrun, _clear_task_context),
        (signals.task_retry, _log_retry),
        (signals.task_failure, lifecycle.record_failure),
        (signals.worker_process_shutdown, lifecycle.close_runtime),
        (signals.worker_shutdown, lifecycle.close_runtime),
    ]
    for signal, receiver in receivers:
        # Strong references: the receivers of ``lifecycle`` live as long as the process.
        signal.connect(receiver, weak=False, dispatch_uid=f"switchboard.{receiver.__name__}")
    if runtime.settings.otel.enabled:
        tracing.connect(runtime.settings)


class _Lifecycle:
    """The receivers that need the process's settings or runtime."""

    def __init__(self, runtime: WorkerRuntime, queues: tuple[str, ...]) -> None:
        self._runtime = runtime
        self._queues = queues

    def setup_logging(self, **_: Any) -> None:
        settings = self._runtime.settings
        service = "beat" if "beat" in sys.argv[1:] else "worker"
        configure_logging(
            settings.log, settings.environment, service=service, trace_ids=settings.otel.enabled
        )

    def serve_metrics(self, sender: Any = None, **_: Any) -> None:
        # The main process serves; with PROMETHEUS_MULTIPROC_DIR it adds up its pool's children.
        settings = self._runtime.settings
        port = settings.celery.metrics_port
        if port:
            registry = exposition_registry()
            registry.register(QueueLengths(str(settings.celery.broker_url), self._queues))
            start_http_server(port, registry=registry)
            log.info("worker.metrics_serving", port=port)

    def record_failure(
        self,
        sender: Task[Any, Any],
        task_id: str,
        exception: BaseException,
        args: Any = None,
        kwargs: Any = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        metrics.count(sender.name, "failed")
        log.error("task.failed", error=type(exception).__name__, message=str(exception))
        failure = TaskFailureCreate(
            task_id=task_id,
            task_name=sender.name,
            call_args=list(args or ()),
            call_kwargs=dict(kwargs or {}),
            exception_type=type(exception).__name__,
            message=str(exception),
            traceback=str(einfo) if einfo else "".join(tb.format_exception(exception)),
            request_id=sender.request.get(REQUEST_ID_HEADER),
            retries=sender.request.retries or 0,
        )
        try:
            self._runtime.run(self._store_failure(failure))
        except Exception:
            # Postgres being down must not turn one failure into two; the log line above stands.
            log.exception("task.failure_not_recorded")

    async def _store_failure(self, failure: TaskFailureCreate) -> None:
        async with self._runtime.unit_of_work() as uow:
            await record_task_failure(uow.session, failure)

    def close_runtime(self, **_: Any) -> None:
        self._runtime.stop()


def _count_sent(sender: str | None = None, **_: Any) -> None:
    metrics.count(sender or "unknown", "sent")


def _count_started(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    metrics.task_started(task_id, task.name)


def _time_task(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    metrics.task_ended(task_id, task.name)


def _count_success(sender: Task[Any, Any], **_: Any) -> None:
    metrics.count(sender.name, "succeeded")


def _count_retry(sender: Task[Any, Any], **_: Any) -> None:
    metrics.count(sender.name, "retried")


def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # A job sent while handling a request (or another task) carries that request's id.
    if headers is None:
        return
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _bind_task_context(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    context = {"task_id": task_id, "task_name": task.name}
    request_id = task.request.get(REQUEST_ID_HEADER)
    if request_id is not None:
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def _log_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    log.warning("task.retry", reason=str(reason), retries=getattr(request, "retries", None))
