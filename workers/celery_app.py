"""The Celery application (Redis or RabbitMQ broker, JSON only, named queues, late
acknowledgement) and the composition root of every process that loads it: settings, app, job
sender, worker runtime and signal receivers are built here, top to bottom, once per process."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, bootsteps
from kombu import Exchange, Queue

from switchboard.runs import jobs as runs_jobs
from switchboard.settings import Settings, settings_or_exit
from workers import signals
from workers.beat import beat_schedule
from workers.runtime import WorkerRuntime
from workers.sender import CeleryJobSender

QUEUES = ("default", "runs", "maintenance", "webhooks")
_EXCHANGE = Exchange("switchboard", type="direct")
# On RabbitMQ the exchange is a topic one: Celery's native delayed delivery (countdowns held by
# the broker, not by a worker) forwards delayed messages only to topic and fanout exchanges.
# Routing keys are queue names, which a topic exchange routes exactly as a direct one.
_AMQP_EXCHANGE = Exchange("switchboard", type="topic")
# The runs queue is replicated and durable on RabbitMQ: a lost runs.execute leaves a chat queued
# until the sweep fails it. The other queues stay classic, which is cheaper per message: what
# they carry is recorded in Postgres and sent again if lost (the sweep, the billing resends,
# the webhooks dispatcher).
_QUORUM_QUEUES = {"runs"}

# Routing by task-name prefix keeps every producer (API, tasks, CLI) agreeing on queues.
TASK_ROUTES = {
    # First match wins: the sweep must not wait behind a backlog of agent runs.
    runs_jobs.SWEEP: {"queue": "maintenance"},
    "runs.*": {"queue": "runs"},
    "auth.*": {"queue": "maintenance"},
    "billing.*": {"queue": "maintenance"},
    "mail.*": {"queue": "maintenance"},
    "retention.*": {"queue": "maintenance"},
    "system.*": {"queue": "maintenance"},
    "webhooks.*": {"queue": "webhooks"},
}

log = structlog.get_logger("switchboard.worker")

TASK_MODULES = [
    "tasks.system",
    "tasks.auth",
    "tasks.runs",
    "tasks.billing",
    "tasks.retention",
    "tasks.mail",
    "tasks.webhooks",
]


class DeclareQueues(bootsteps.StartStopStep):
    """On RabbitMQ, a worker declares every queue of the app before it consumes: Celery's
    delayed-delivery step then binds each of them to its exchanges, not only the worker's own
    queues, and a queue nobody declared yet would be an error in the log."""

    def start(self, parent: Any) -> None:
        app: Celery = parent.app
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1)
                channel = connection.default_channel
                for queue in app.amqp.queues.values():
                    queue.bind(channel).declare()
        except Exception as exc:  # the consumer reconnects by itself; its queues come then
            log.warning("worker.queues_not_declared", error=type(exc).__name__)


def create_celery(settings: Settings) -> Celery:
    app = Celery("switchboard")
    broker = _rabbitmq(settings) if settings.celery.amqp_broker else _redis(settings)
    if settings.celery.amqp_broker:
        app.steps["worker"].add(DeclareQueues)
    app.conf.update(
        broker_url=str(settings.celery.broker_url),
        result_backend=str(settings.celery.result_backend),
        **broker,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # One backend for all of a thread-pool worker's threads: Celery otherwise builds one per
        # thread at its first task, scanning the installed packages' entry points each time.
        result_backend_thread_safe=True,
        result_expires=settings.celery.result_expires_seconds,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_default_exchange=_EXCHANGE.name,
        task_default_routing_key="default",
        task_create_missing_queues=False,
        task_routes=TASK_ROUTES,
        task_track_started=True,
        # No task-sent event: it is a second broker publish on every send, in the API's
        # request path. Flower shows a task from the moment a worker receives it; the backlog
        # before that is the celery_queue_length metric.
        task_send_sent_event=False,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
        timezone="UTC",
        beat_scheduler="redbeat.RedBeatScheduler",
        beat_schedule=beat_schedule(settings),
        redbeat_key_prefix="switchboard:redbeat:",
        redbeat_lock_timeout=settings.beat.lock_timeout_seconds,
        # A standby beat polls the lock once per loop interval: this bounds fail-over time.
        beat_max_loop_interval=settings.beat.lock_timeout_seconds / 5,
        include=TASK_MODULES,
    )
    return app


def _redis(settings: Settings) -> dict[str, Any]:
    visibility = {"visibility_timeout": settings.celery.visibility_timeout_seconds}
    return {
        # The Redis transport, the result backend and the redbeat lock each read their own
        # copy of the visibility timeout; they must agree or tasks are redelivered early.
        "broker_transport_options": visibility,
        "result_backend_transport_options": visibility,
        "task_queues": [Queue(name, _EXCHANGE, routing_key=name) for name in QUEUES],
        "redbeat_redis_url": str(settings.celery.broker_url),
    }


def _rabbitmq(settings: Settings) -> dict[str, Any]:
    """RabbitMQ redelivers a task when its worker's channel closes, not after a timeout, so
    there is no visibility timeout to set."""
    return {
        # Each publish waits for the broker's acknowledgement: a job reported sent is in the
        # broker, and a refused one raises in the sender instead of vanishing.
        "broker_transport_options": {"confirm_publish": True},
        "task_queues": [
            Queue(
                name,
                _AMQP_EXCHANGE,
                routing_key=name,
                queue_arguments={"x-queue-type": "quorum"} if name in _QUORUM_QUEUES else None,
            )
            for name in QUEUES
        ],
        "task_default_exchange_type": _AMQP_EXCHANGE.type,
        # Quorum queues refuse a channel-wide prefetch: Celery then sets it per consumer.
        # Countdowns (retries, busy webhook endpoints) wait in the broker's delayed-delivery
        # queues, declared by every worker at start (broker_native_delayed_delivery_queue_type
        # keeps its default, quorum).
        "worker_detect_quorum_queues": True,
        # The schedule and the lock stay in Redis, with the application's data. Options of
        # its own, or RedBeat would take the broker's transport options for its client's.
        "redbeat_redis_url": str(settings.redis.url),
        "redbeat_redis_options": {},
    }


settings = settings_or_exit()
celery_app = create_celery(settings)
job_sender = CeleryJobSender(celery_app)
runtime = WorkerRuntime(settings, job_sender)
signals.connect(runtime, queues=QUEUES)
