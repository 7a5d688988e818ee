"""The Celery application (Redis broker, JSON only, named queues, late acknowledgement) and the
composition root of every process that loads it: settings, app, job sender, worker runtime and
signal receivers are built here, top to bottom, once per process."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from switchboard.runs import jobs as runs_jobs
from switchboard.settings import Settings, settings_or_exit
from workers import signals
from workers.beat import beat_schedule
from workers.runtime import WorkerRuntime
from workers.sender import CeleryJobSender

QUEUES = ("default", "runs", "maintenance", "webhooks")
_EXCHANGE = Exchange("switchboard", type="direct")

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

TASK_MODULES = [
    "tasks.system",
    "tasks.auth",
    "tasks.runs",
    "tasks.billing",
    "tasks.retention",
    "tasks.mail",
    "tasks.webhooks",
]


def create_celery(settings: Settings) -> Celery:
    app = Celery("switchboard")
    visibility = {"visibility_timeout": settings.celery.visibility_timeout_seconds}
    app.conf.update(
        broker_url=str(settings.celery.broker_url),
        result_backend=str(settings.celery.result_backend),
        # The Redis transport, the result backend and the redbeat lock each read their own
        # copy of the visibility timeout; they must agree or tasks are redelivered early.
        broker_transport_options=visibility,
        result_backend_transport_options=visibility,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_expires=settings.celery.result_expires_seconds,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name, _EXCHANGE, routing_key=name) for name in QUEUES],
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
        redbeat_redis_url=str(settings.celery.broker_url),
        redbeat_key_prefix="switchboard:redbeat:",
        redbeat_lock_timeout=settings.beat.lock_timeout_seconds,
        # A standby beat polls the lock once per loop interval: this bounds fail-over time.
        beat_max_loop_interval=settings.beat.lock_timeout_seconds / 5,
        include=TASK_MODULES,
    )
    return app


settings = settings_or_exit()
celery_app = create_celery(settings)
job_sender = CeleryJobSender(celery_app)
runtime = WorkerRuntime(settings, job_sender)
signals.connect(runtime, queues=QUEUES)
