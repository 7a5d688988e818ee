"""Celery's own metrics: tasks by name and state, their runtimes, and the queues' lengths.

Counted from Celery's signals in every process that sends or runs tasks; prefork children write
to ``PROMETHEUS_MULTIPROC_DIR`` and the worker's main process adds them up on its metrics port.
Queue lengths are read from the broker when Prometheus scrapes, so they are right whichever
worker answers: list lengths on Redis, a passive queue declaration's message count on RabbitMQ.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import amqp
import redis
from kombu import Connection
from kombu.exceptions import OperationalError
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from switchboard.settings import is_amqp_url

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
# Each read of the broker gives up after this long.
_TIMEOUT_SECONDS = 2

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
        self._queues = tuple(queues)
        self._url = broker_url
        self._client = None
        if not is_amqp_url(broker_url):
            self._client = redis.Redis.from_url(
                broker_url, socket_timeout=_TIMEOUT_SECONDS, socket_connect_timeout=_TIMEOUT_SECONDS
            )

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "celery_queue_length", "Messages waiting in the broker, by queue.", labels=["queue"]
        )
        try:
            lengths = self._rabbitmq_lengths() if self._client is None else self._redis_lengths()
        except (redis.RedisError, amqp.AMQPError, OperationalError, OSError):
            return  # the broker is away: no sample beats a wrong zero
        for queue, length in zip(self._queues, lengths, strict=True):
            family.add_metric([queue], length)
        yield family

    def _redis_lengths(self) -> list[int]:
        assert self._client is not None
        with self._client.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                for step in _PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}" if step else queue)
            lengths = pipe.execute()
        steps = len(_PRIORITY_STEPS)
        return [
            sum(lengths[index * steps : (index + 1) * steps]) for index in range(len(self._queues))
        ]

    def _rabbitmq_lengths(self) -> list[int]:
        """Messages ready in each queue (those delivered and not yet acknowledged are not
        counted, as on Redis), read by passive declarations, which create nothing. A
        connection per scrape: nothing is held open between scrapes."""
        timeouts = {"read_timeout": _TIMEOUT_SECONDS, "write_timeout": _TIMEOUT_SECONDS}
        lengths = []
        with Connection(
            self._url, connect_timeout=_TIMEOUT_SECONDS, transport_options=timeouts
        ) as connection:
            connection.ensure_connection(max_retries=0)  # one attempt: a scrape does not wait
            channel = cast(amqp.Channel, connection.channel())  # kombu's pyamqp channel is one
            for queue in self._queues:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                except amqp.NotFound:
                    # Not declared yet, by a worker or a publisher: nothing waits in it. The
                    # broker closes a channel whose declaration failed: go on with another.
                    lengths.append(0)
                    channel = cast(amqp.Channel, connection.channel())
                    continue
                assert declared is not None  # None only without waiting for the answer
                _, messages, _ = declared
                lengths.append(messages)
        return lengths
