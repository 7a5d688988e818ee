"""Celery's own metrics: tasks by name and state, their runtimes, and the queues' lengths.

Counted from Celery's signals in every process that sends or runs tasks; prefork children write
to ``PROMETHEUS_MULTIPROC_DIR`` and the worker's main process adds them up on its metrics port.
Queue lengths are read from the broker when Prometheus scrapes, so they are right whichever
worker answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TASKS = Counter(
    "celery_tasks_total",
    "Tasks by name and state: sent (by any producer), started, succeeded, failed, retried.",
    ["task", "state"],
)
RUNTIME = Histogram(
    "celery_task_runtime_seconds",
    "Time a task ran in a worker, whatever its outcome.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)

# kombu's Redis transport keeps a list per queue and priority step: "runs", "runs\x06\x163", ...
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)

_started: dict[str, float] = {}


def task_started(task_id: str, task: str) -> None:
    _started[task_id] = time.perf_counter()
    TASKS.labels(task, "started").inc()


def task_ended(task_id: str, task: str) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        RUNTIME.labels(task).observe(time.perf_counter() - started)


def count(task: str, state: str) -> None:
    TASKS.labels(task, state).inc()


class QueueLengths(Collector):
    """``celery_queue_length{queue}``: messages waiting in each queue, read at scrape time."""

    def __init__(self, broker_url: str, queues: Sequence[str]) -> None:
        self._client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        self._queues = tuple(queues)

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "celery_queue_length", "Messages waiting in the broker, by queue.", labels=["queue"]
        )
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for queue in self._queues:
                    for step in _PRIORITY_STEPS:
                        pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}" if step else queue)
                lengths = pipe.execute()
        except redis.RedisError:
            return  # the broker is away: no sample beats a wrong zero
        steps = len(_PRIORITY_STEPS)
        for index, queue in enumerate(self._queues):
            family.add_metric([queue], sum(lengths[index * steps : (index + 1) * steps]))
        yield family
