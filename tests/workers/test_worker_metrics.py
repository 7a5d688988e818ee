"""A worker's /metrics: its tasks by state, their runtimes and the broker's queue lengths."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from tests.support.metrics import sample
from tests.support.processes import free_port
from tests.support.worker import start_worker, stop_worker, wait_until_ready
from tests.support.worker_app import ISOLATED_QUEUE


@pytest.fixture
def metrics_url(tmp_path: Path) -> Iterator[str]:
    """A prefork worker of its own (so its counters are only this test's) serving /metrics,
    its child's samples added up through a multiprocess directory, as in production."""
    port = free_port()
    shared = tmp_path / "metrics"
    shared.mkdir()
    worker = start_worker(
        tmp_path,
        queues=ISOLATED_QUEUE,
        env={
            "CELERY_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(shared),
            "LOG_LEVEL": "INFO",
        },
    )
    try:
        wait_until_ready(worker)
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop_worker(worker)


def test_a_workers_metrics_count_its_tasks_and_the_queues(
    celery_app: Celery, metrics_url: str
) -> None:
    before = httpx.get(metrics_url, timeout=5).text
    assert celery_app.send_task("system.ping", queue=ISOLATED_QUEUE).get(timeout=30) == "pong"
    failed = celery_app.send_task("tests.fail", args=["on purpose"], queue=ISOLATED_QUEUE)
    with pytest.raises(ValueError, match="on purpose"):
        failed.get(timeout=30)
    # Three messages for "runs", which no worker consumes at this point of the session.
    for _ in range(3):
        celery_app.send_task("tests.nobody", queue="runs")

    # The result is stored before the worker's last signals run: scrape until they have.
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(metrics_url, timeout=5).text
        done = sample(text, "celery_task_runtime_seconds_count", task="tests.fail")
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    def tasks(task: str, state: str) -> float | None:
        return sample(text, "celery_tasks_total", task=task, state=state)

    assert tasks("system.ping", "started") == 1
    assert tasks("system.ping", "succeeded") == 1
    assert tasks("tests.fail", "failed") == 1
    assert tasks("tests.fail", "succeeded") is None
    assert sample(text, "celery_task_runtime_seconds_count", task="system.ping") == 1
    assert sample(text, "celery_task_runtime_seconds_count", task="tests.fail") == 1
    assert sample(text, "celery_queue_length", queue=ISOLATED_QUEUE) is None  # not ours to list
    waiting = sample(text, "celery_queue_length", queue="runs")
    waited = sample(before, "celery_queue_length", queue="runs")
    assert waiting is not None
    assert waited is not None
    assert waiting - waited == 3
    assert sample(text, "celery_queue_length", queue="maintenance") is not None
