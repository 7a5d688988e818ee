"""One asyncio event loop per worker process, on a thread of its own.

Celery calls tasks synchronously. Async domain code needs a loop, and its engine and Redis
pools belong to the loop that created them: a fresh ``asyncio.run()`` per task would strand
pooled connections on dead loops ("attached to a different loop"). So each process starts one
loop on first use, after any fork, creates its clients inside it, and every task submits its
coroutine there. Thread-pool workers share that loop, so one process serves many tasks at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import uvloop

from switchboard.kit.resources import Resources, open_resources
from switchboard.kit.uow import UnitOfWork
from switchboard.settings import Settings
from workers.sender import CeleryJobSender

T = TypeVar("T")


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stack: AsyncExitStack | None = None
        self._resources: Resources | None = None

    @property
    def resources(self) -> Resources:
        self._ensure_started()
        assert self._resources is not None
        return self._resources

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self._ensure_started()
        assert self._loop is not None
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this process's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # A time limit or shutdown interrupted the wait: stop the coroutine as well.
            future.cancel()
            raise

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.resources.sessionmaker, CeleryJobSender())

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # Either never started, or inherited across fork: the parent's loop thread does
            # not exist here, so start afresh and never touch the inherited clients.
            # uvloop, as uvicorn runs the API: far less overhead per callback than asyncio's.
            loop = uvloop.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="switchboard-loop", daemon=True)
            thread.start()
            stack = AsyncExitStack()
            opened = open_resources(self._settings, application_name="switchboard-worker")
            resources = asyncio.run_coroutine_threadsafe(
                stack.enter_async_context(opened), loop
            ).result()
            self._loop, self._thread, self._stack, self._resources = loop, thread, stack, resources
            self._pid = os.getpid()

    def stop(self) -> None:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                return
            loop, thread, stack = self._loop, self._thread, self._stack
            if stack is not None:
                asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            loop.close()
            self._pid = self._loop = self._thread = self._stack = self._resources = None


_runtime: WorkerRuntime | None = None


def get_runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        from workers.celery_app import settings

        _runtime = WorkerRuntime(settings)
    return _runtime
