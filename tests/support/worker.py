"""Real Celery worker processes consuming from the test run's Redis broker, and the API process
their runs' clients call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from celery.utils.nodenames import host_format
from httpx import AsyncClient

from tests.conftest import WORKER_ENV
from tests.support.processes import STARTUP_SECONDS, Served, free_port

ROOT = Path(__file__).resolve().parents[2]
# Agent runs go to their own thread-pool worker, as in production (tests/e2e): the Agents SDK
# starts threads at import, which a prefork child must not inherit mid-operation.
QUEUES = "default,maintenance"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    hostname: str
    log_path: Path
    metrics_url: str | None = None
    """Its /metrics, when started with a metrics port."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "--app=tests.support.worker_app:celery_app", *args]


def start_worker(
    tmp_dir: Path,
    *,
    pool: str = "prefork",
    concurrency: int = 1,
    queues: str = QUEUES,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
    log_path = tmp_dir / f"worker-{hostname.split('@')[0]}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            celery_command(
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                f"--queues={queues}",
                f"--hostname={hostname}",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ),
            cwd=ROOT,
            env={**os.environ, **WORKER_ENV, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(process, hostname, log_path)


def wait_until_ready(worker: WorkerProcess, timeout: float = STARTUP_SECONDS) -> None:
    """For a worker that takes no ping (another queue): its log says when it consumes."""
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready:\n{worker.log()}")
        time.sleep(0.2)


def wait_until_consuming(
    app: Celery, worker: WorkerProcess, timeout: float = STARTUP_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log()}")
        try:
            if app.send_task("system.ping").get(timeout=2) == "pong":
                return
        except Exception:  # not consuming yet
            time.sleep(0.2)
    raise RuntimeError(f"worker did not answer a ping in {timeout}s:\n{worker.log()}")


def start_runs_worker(
    tmp_dir: Path,
    *,
    concurrency: int = 20,
    metrics: bool = False,
    env: Mapping[str, str] | None = None,
) -> WorkerProcess:
    """A worker of the runs queue as production runs them, on a thread pool, started and not
    yet waited for (``wait_until_ready``); ``env`` over the session's. With ``metrics`` it
    serves /metrics at ``metrics_url``.

    Two at once share the runs queue: whichever is free takes a run."""
    extra = {"LOG_LEVEL": "INFO", **(env or {})}  # wait_until_ready reads the INFO "ready." line
    port = free_port() if metrics else None
    if port is not None:
        extra["CELERY_METRICS_PORT"] = str(port)
    process = start_worker(
        tmp_dir, pool="threads", concurrency=concurrency, queues="runs", env=extra
    )
    if port is not None:
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return process


@contextmanager
def runs_worker_process(
    tmp_dir: Path,
    *,
    concurrency: int = 20,
    metrics: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[WorkerProcess]:
    """``start_runs_worker``, ready to consume; stopped on exit."""
    process = start_runs_worker(tmp_dir, concurrency=concurrency, metrics=metrics, env=env)
    try:
        wait_until_ready(process)
        yield process
    finally:
        stop_worker(process)


def start_beat(log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``celery beat`` on the production app, ``env`` over the session's; stop it with
    ``stop_beat``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "--app=workers.celery_app:celery_app", "beat"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_beat(beat: subprocess.Popen[bytes]) -> None:
    """SIGTERM: beat gives its RedBeat lock back as it stops."""
    beat.terminate()
    beat.wait(timeout=15)


def take_queue(app: Celery, worker: WorkerProcess, queue: str = "runs") -> None:
    """Tells a ready worker started on IDLE_QUEUE (which no task is sent to) to consume from
    ``queue`` too, through Celery's remote control; returns once it answered. Started while
    another worker holds ``queue``, it starts up meanwhile and takes no task of that one's."""
    destination = host_format(worker.hostname)
    replies = app.control.add_consumer(queue, destination=[destination], reply=True, timeout=10)
    assert replies == [{destination: {"ok": f"add consumer {queue}"}}], replies


class ApiProcess(Served):
    """``python -m api`` on a free port, ``env`` over the session's, started and not yet
    waited for (``wait``); its base URL is ``base``. Streams reach the client as uvicorn
    sends them."""

    def __init__(self, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        super().__init__(
            "api", {**(env or {}), "API_PORT": str(port)}, f"{self.base}/health/live", log_path
        )


@contextmanager
def api_process(log_path: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """An ``ApiProcess``; yields its base URL once it answers."""
    process = ApiProcess(log_path, env)
    try:
        process.wait()
        yield process.base
    finally:
        process.stop()


@pytest.fixture
async def api(api_server: str) -> AsyncIterator[AsyncClient]:
    """A client of the API process at ``api_server``, a fixture of the test's module or conftest
    (usually an ``api_process``)."""
    async with AsyncClient(base_url=api_server, timeout=30) as client:
        yield client


@pytest.fixture
async def apis(two_apis: tuple[str, str]) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    """Clients of two API processes (``two_apis``, a fixture of the test's module or
    conftest), for what must hold across processes."""
    async with (
        AsyncClient(base_url=two_apis[0], timeout=30) as first,
        AsyncClient(base_url=two_apis[1], timeout=30) as second,
    ):
        yield first, second


def stop_worker(worker: WorkerProcess) -> None:
    stop_workers([worker])


def stop_workers(workers: Sequence[WorkerProcess]) -> None:
    """A warm shutdown of each (SIGKILL 20 s later), every one told first, so that they shut
    down at once."""
    running = [worker for worker in workers if worker.process.poll() is None]
    for worker in running:
        worker.process.send_signal(signal.SIGTERM)
    for worker in running:
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture(scope="session")
def celery_app() -> Celery:
    from tests.support.worker_app import celery_app

    return celery_app


@pytest.fixture(scope="session")
def worker(
    celery_app: Celery, migrated_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One prefork worker with a single child process, shared by the session."""
    process = start_worker(tmp_path_factory.mktemp("worker"))
    try:
        wait_until_consuming(celery_app, process)
        yield process
    finally:
        stop_worker(process)
