"""Sends buffered jobs to the broker through a Celery app."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from celery import Celery

from switchboard.kit.jobs import Job
from switchboard.settings import is_amqp_url

# Celery priorities run 0 to 9; the jobs' 0 goes first.
_LOWEST = 9


class CeleryJobSender:
    def __init__(self, app: Celery) -> None:
        self._app = app
        self._amqp = is_amqp_url(str(app.conf.broker_url))

    async def send(self, jobs: Sequence[Job]) -> list[str]:
        # Publishing is blocking kombu I/O; one thread hop per flush keeps the loop free.
        return await asyncio.to_thread(self._publish, jobs)

    def _publish(self, jobs: Sequence[Job]) -> list[str]:
        return [
            self._app.send_task(
                job.name,
                args=list(job.args),
                kwargs=dict(job.kwargs),
                queue=job.queue,
                countdown=self._countdown(job.countdown),
                priority=self._priority(job.priority),
                task_id=job.task_id,
                ignore_result=self._ignores_result(job.name),
            ).id
            for job in jobs
        ]

    def _countdown(self, countdown: float | None) -> float | None:
        # RabbitMQ's delayed delivery counts whole seconds, and Celery refuses a delay under one.
        if self._amqp and countdown:
            return math.ceil(countdown)
        return countdown

    def _priority(self, priority: int | None) -> int | None:
        # kombu's Redis transport serves 0 first, RabbitMQ the highest number first.
        if self._amqp and priority is not None:
            return _LOWEST - priority
        return priority

    def _ignores_result(self, name: str) -> bool:
        """send_task by name asks for a result unless told otherwise, whatever the app's
        default: the sender then subscribes to the result's channel, and the worker stores a
        STARTED state (two Redis round trips before the task even starts) and the return value.
        Jobs take the task's own setting where this process knows the task, else the app's (no
        results)."""
        task = self._app.tasks.get(name)
        return bool(task.ignore_result if task is not None else self._app.conf.task_ignore_result)
