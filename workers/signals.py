"""Worker lifecycle and task context: logging, request ids, failure records."""

from __future__ import annotations

import sys
import traceback as tb
from typing import Any

import structlog
from celery import signals
from celery.app.task import Task
from prometheus_client import start_http_server

from switchboard.kit.logging import configure_logging
from switchboard.kit.metrics import exposition_registry
from switchboard.ops.schemas import TaskFailureCreate
from switchboard.ops.service import record_task_failure
from workers import metrics
from workers.celery_app import QUEUES, settings
from workers.metrics import QueueLengths
from workers.runtime import get_runtime

log = structlog.get_logger("switchboard.worker")

REQUEST_ID_HEADER = "request_id"


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    service = "beat" if "beat" in sys.argv[1:] else "worker"
    configure_logging(settings.log, settings.environment, service=service)


@signals.worker_ready.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    # The main process serves; with PROMETHEUS_MULTIPROC_DIR it adds up its pool's children.
    port = settings.celery.metrics_port
    if port:
        registry = exposition_registry()
        registry.register(QueueLengths(str(settings.celery.broker_url), QUEUES))
        start_http_server(port, registry=registry)
        log.info("worker.metrics_serving", port=port)


@signals.after_task_publish.connect
def _count_sent(sender: str | None = None, **_: Any) -> None:
    metrics.count(sender or "unknown", "sent")


@signals.task_prerun.connect
def _count_started(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    metrics.task_started(task_id, task.name)


@signals.task_postrun.connect
def _time_task(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    metrics.task_ended(task_id, task.name)


@signals.task_success.connect
def _count_success(sender: Task[Any, Any], **_: Any) -> None:
    metrics.count(sender.name, "succeeded")


@signals.task_retry.connect
def _count_retry(sender: Task[Any, Any], **_: Any) -> None:
    metrics.count(sender.name, "retried")


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # A job sent while handling a request (or another task) carries that request's id.
    if headers is None:
        return
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _bind_task_context(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    context = {"task_id": task_id, "task_name": task.name}
    request_id = task.request.get(REQUEST_ID_HEADER)
    if request_id is not None:
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


@signals.task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@signals.task_retry.connect
def _log_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    log.warning("task.retry", reason=str(reason), retries=getattr(request, "retries", None))


@signals.task_failure.connect
def _record_failure(
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
        get_runtime().run(_store_failure(failure))
    except Exception:
        # Postgres being down must not turn one failure into two; the log line above stands.
        log.exception("task.failure_not_recorded")


async def _store_failure(failure: TaskFailureCreate) -> None:
    async with get_runtime().unit_of_work() as uow:
        await record_task_failure(uow.session, failure)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_runtime(**_: Any) -> None:
    get_runtime().stop()
