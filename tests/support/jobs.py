"""A job sender that keeps what it was given, where no worker should run the jobs."""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.kit.jobs import Job


class SentJobs:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def send(self, jobs: Sequence[Job]) -> list[str]:
        self.jobs.extend(jobs)
        return [job.task_id for job in jobs]
