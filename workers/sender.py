"""Sends buffered jobs to the broker through Celery."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from switchboard.kit.jobs import Job


class CeleryJobSender:
    async def send(self, jobs: Sequence[Job]) -> list[str]:
        # Publishing is blocking kombu I/O; one thread hop per flush keeps the loop free.
        return await asyncio.to_thread(send_jobs, jobs)


def send_jobs(jobs: Sequence[Job]) -> list[str]:
    from workers.celery_app import celery_app

    return [
        celery_app.send_task(
            job.name,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            queue=job.queue,
            countdown=job.countdown,
            task_id=job.task_id,
        ).id
        for job in jobs
    ]
