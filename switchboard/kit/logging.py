"""structlog configuration shared by the API, the workers and the CLI.

Every process logs the same fields: ``timestamp``, ``level``, ``event``, ``service`` and
whatever the context binds (``request_id`` in the API, ``task_id``/``task_name`` in workers),
and with tracing on ``trace_id`` and ``span_id`` of the span current when the line was written.
Standard-library loggers (uvicorn, celery, sqlalchemy) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from switchboard.settings import Environment, LogFormat, LogSettings

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def _use_json(settings: LogSettings, environment: Environment) -> bool:
    if settings.format is LogFormat.auto:
        return environment is not Environment.development
    return settings.format is LogFormat.json


def configure_logging(
    settings: LogSettings, environment: Environment, *, service: str, trace_ids: bool = False
) -> None:
    """``trace_ids``: tracing is on (``OtelSettings.enabled``); off, the processor that reads
    the current span is not even installed."""
    shared = [*_SHARED_PROCESSORS, add_trace_ids] if trace_ids else _SHARED_PROCESSORS
    renderer: Any
    if _use_json(settings, environment):
        renderer = structlog.processors.JSONRenderer()
        # Never log local variables: they can hold tokens, passwords and request bodies.
        exception_processor: list[Any] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        exception_processor = []

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            _add_service(service),
            _drop_color_message,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exception_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our middleware logs each request with its request id; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The ids of the span current in the writing thread or task, if its trace is recorded.

    Sampled rather than recording: a request's span has ended by the time its access line is
    written (with the last byte of the response), and belongs to the line all the same."""
    context = trace.get_current_span().get_span_context()
    if context.trace_flags.sampled:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _drop_color_message(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    # uvicorn passes an ANSI-coloured copy of each message as an extra; the renderer colours.
    event_dict.pop("color_message", None)
    return event_dict
