"""One chat, one trace: an API process and a runs worker exporting to a collector the test runs
(OTLP/HTTP), the trace context carried through the Celery message, the trace id in the log
lines of both processes. A prefork worker traces from its pool's children."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from tests.e2e.conftest import sign_up
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.sse import collect
from tests.support.worker import (
    ApiProcess,
    WorkerProcess,
    start_runs_worker,
    start_worker,
    stop_worker,
    wait_until_ready,
)
from tests.support.worker_app import ISOLATED_QUEUE

API = "switchboard-api"
RUNS_WORKER = "switchboard-worker-runs"
STREAM_ROUTE = "POST /api/v1/chat/stream"


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def started(
    committed_keys: KeySnapshot, collector: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiProcess, WorkerProcess, WorkerProcess]]:
    """An API process, a runs worker and a prefork worker of a queue of its own, started
    together, tracing with the Agents SDK's spans, exporting every 50 ms."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.origin,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "AGENTS_TRACING": "otel",
        "LOG_LEVEL": "INFO",
    }
    logs = tmp_path_factory.mktemp("tracing")
    api = ApiProcess(logs / "api.log", env)
    runs = start_runs_worker(logs, env=env)
    prefork = start_worker(logs, queues=ISOLATED_QUEUE, env=env)
    try:
        yield api, runs, prefork
    finally:
        api.terminate()
        for worker in (runs, prefork):
            stop_worker(worker)
        api.stop()


@pytest.fixture
def traced(
    started: tuple[ApiProcess, WorkerProcess, WorkerProcess],
) -> tuple[ApiProcess, WorkerProcess]:
    api, runs, _ = started
    api.wait()
    wait_until_ready(runs)
    return api, runs


@pytest.fixture
def api_server(traced: tuple[ApiProcess, WorkerProcess]) -> str:
    return traced[0].base


def chain(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    """The span and its ancestors, nearest first, as far as the trace holds them."""
    found = [span]
    while found[-1].parent_id in by_id:
        found.append(by_id[str(found[-1].parent_id)])
    return found


def log_line(read: Callable[[], str], **fields: str) -> dict[str, Any]:
    """The JSON log line holding ``fields``, once the process has written it."""
    deadline = time.monotonic() + 10
    while True:
        for line in read().splitlines():
            if line.startswith("{"):
                found = json.loads(line)
                if all(found.get(key) == value for key, value in fields.items()):
                    return dict(found)
        assert time.monotonic() < deadline, f"no log line with {fields}"
        time.sleep(0.05)


# One delta per word: more words than the run makes script calls of its own.
MESSAGE = " ".join(["trace"] * 30)


async def test_one_chat_is_one_trace_from_the_request_to_the_worker(
    api: AsyncClient, traced: tuple[ApiProcess, WorkerProcess], collector: OtlpReceiver
) -> None:
    headers = await sign_up(api)
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": MESSAGE}, headers=headers
    ) as response:
        assert response.status_code == 200
        frames = await collect(response)
    assert frames[-1].event == "run.completed"
    run_id = frames[-1].data["run_id"]

    def whole(spans: list[ReceivedSpan]) -> bool:
        names = {(span.service, span.name) for span in spans}
        return {(API, STREAM_ROUTE), (RUNS_WORKER, "run/runs.execute")} <= names

    spans = collector.wait_for(whole)
    [request] = [span for span in spans if (span.service, span.name) == (API, STREAM_ROUTE)]
    trace = [span for span in spans if span.trace_id == request.trace_id]
    by_id = {span.span_id: span for span in trace}
    assert request.parent_id is None

    # The worker's run descends from the request, through the API's send of the job.
    [task] = [span for span in trace if span.name == "run/runs.execute"]
    assert task.service == RUNS_WORKER
    path = [(span.service, span.name) for span in chain(task, by_id)]
    assert path == [
        (RUNS_WORKER, "run/runs.execute"),
        (API, "apply_async/runs.execute"),
        (API, "uow.send_jobs"),
        (API, STREAM_ROUTE),
    ]
    # The steps of the request and of the run, each under its own side's root.
    named = {(span.service, span.name): span for span in trace}
    for step in ("runs.admit", "runs.store", "uow.commit", "uow.send_jobs"):
        assert request in chain(named[API, step], by_id), step
    for step in ("runs.claim", "runs.agent", "runs.first_token", "runs.finish"):
        assert task in chain(named[RUNS_WORKER, step], by_id), step
    first_token, agent = named[RUNS_WORKER, "runs.first_token"], named[RUNS_WORKER, "runs.agent"]
    assert agent.span_id == first_token.parent_id
    # Event publishing makes no span: a span per streamed token would drown the trace.
    scripts = [span for span in trace if span.service == RUNS_WORKER and "EVAL" in span.name]
    assert len(scripts) < len(MESSAGE.split()), [span.name for span in scripts]
    [waited] = [span for span in trace if span.name == "queue_wait/runs.execute"]
    assert (waited.service, waited.parent_id) == (RUNS_WORKER, task.parent_id)

    # SQL and Redis on both sides, and the Agents SDK's spans under the run.
    for service in (API, RUNS_WORKER):
        systems = {span.attributes.get("db.system") for span in trace if span.service == service}
        assert {"postgresql", "redis"} <= systems, (service, systems)
    agents = [span for span in trace if span.name.startswith("agents.")]
    assert "agents.agent triage" in {span.name for span in agents}
    assert all(task in chain(span, by_id) for span in agents)

    # The trace id is in the log lines of the request and of the run.
    api_process, worker = traced
    access = log_line(
        api_process.log_path.read_text, event="http.request", route="/api/v1/chat/stream"
    )
    assert access["trace_id"] == request.trace_id
    finished = log_line(worker.log, event="runs.succeeded", run_id=run_id)
    assert finished["trace_id"] == request.trace_id


def test_a_prefork_worker_traces_from_its_pool_children(
    started: tuple[ApiProcess, WorkerProcess, WorkerProcess],
    celery_app: Celery,
    collector: OtlpReceiver,
) -> None:
    _, _, prefork = started
    wait_until_ready(prefork)
    key = f"tests:mark:{uuid.uuid4().hex}"
    task_id = celery_app.send_task("tests.mark", args=[key], queue=ISOLATED_QUEUE).id

    def ran(spans: list[ReceivedSpan]) -> bool:
        return any(span.attributes.get("messaging.message.id") == task_id for span in spans)

    [task] = [
        span
        for span in collector.wait_for(ran)
        if span.name == "run/tests.mark" and span.attributes.get("messaging.message.id") == task_id
    ]
    assert task.service == f"switchboard-worker-{ISOLATED_QUEUE}"
    # Sent by this test process, which does not trace: the run starts a trace of its own.
    assert task.parent_id is None
    redis = [span for span in collector.spans if span.parent_id == task.span_id]
    assert [span.name for span in redis] == ["SET"]
