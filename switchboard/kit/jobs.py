"""Jobs recorded during a unit of work and sent only once it has committed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """A Celery task to send, by name: the domain never imports the worker code."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    countdown: float | None = None
    priority: int | None = None
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class JobSender(Protocol):
    """Sends jobs to the broker; the workers package provides the Celery implementation."""

    async def send(self, jobs: Sequence[Job]) -> list[str]: ...


class JobBuffer:
    """Collects jobs while a transaction is open.

    A job enqueued before commit could run before its rows are visible, or run for rows that
    were rolled back; buffering until after commit rules out both.
    """

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._undo: list[Callable[[], Awaitable[None]]] = []
        self._then: list[Callable[[], Awaitable[None]]] = []

    def enqueue(
        self,
        name: str,
        *args: Any,
        queue: str | None = None,
        countdown: float | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> str:
        """Buffers a job and returns the id its task will have once sent. ``priority``: 0
        (first) to 9, within its queue."""
        job = Job(name, args, kwargs, queue, countdown, priority)
        self._jobs.append(job)
        return job.task_id

    @property
    def pending(self) -> tuple[Job, ...]:
        return tuple(self._jobs)

    def on_rollback(self, undo: Callable[[], Awaitable[None]]) -> None:
        """``undo`` runs if the transaction rolls back or fails to commit: it gives back what
        was taken outside Postgres for work that will never happen (a run's admission, a
        stream's slots)."""
        self._undo.append(undo)

    def on_commit(self, then: Callable[[], Awaitable[None]]) -> None:
        """``then`` runs once the transaction has committed, after the jobs were sent: work
        outside Postgres that must not happen for rows that were rolled back."""
        self._then.append(then)

    def drop(self) -> None:
        self._jobs.clear()
        self._then.clear()

    async def rolled_back(self) -> None:
        undo, self._undo = self._undo, []
        for callback in reversed(undo):
            await callback()

    async def flush(self, sender: JobSender) -> list[str]:
        self._undo.clear()
        jobs, self._jobs = self._jobs, []
        then, self._then = self._then, []
        sent = await sender.send(jobs) if jobs else []
        for callback in then:
            await callback()
        return sent
