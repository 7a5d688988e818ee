"""Faults end to end on a system of its own: a worker killed mid-run, Redis restarted.

Everything here runs against a private ``redis-server`` (broker, events and leases), so
killing and restarting it touches no other test: API, runs worker, maintenance worker and
beat are real processes pointed at it, with a short lease and sweep period.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from tests.e2e.conftest import sign_up
from tests.support.redis import PrivateRedis
from tests.support.sse import Frame, frames, read_until
from tests.support.worker import (
    ApiProcess,
    WorkerProcess,
    start_beat,
    start_worker,
    stop_beat,
    stop_worker,
    wait_until_ready,
)

WORDS = " ".join(f"word{index}" for index in range(60))
TOKEN_DELAY_MS = 60
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


@pytest.fixture(scope="module")
def system_env(private_redis: PrivateRedis) -> dict[str, str]:
    return {
        "REDIS_URL": private_redis.url,
        "CELERY_BROKER_URL": private_redis.url,
        "CELERY_RESULT_BACKEND": private_redis.url,
        "RUNS_LEASE_SECONDS": "2",
        "RUNS_SWEEP_SECONDS": "1",
        "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def maintenance(
    system_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """Beat and a worker for its tasks: the sweep of lost runs runs as in production. Started
    and not waited for (``runs_worker`` waits), so that the system's processes start up at
    once."""
    directory = tmp_path_factory.mktemp("maintenance")
    worker = start_worker(
        directory, pool="threads", concurrency=2, queues="maintenance", env=system_env
    )
    beat = start_beat(directory / "beat.log", system_env)
    try:
        yield worker
    finally:
        stop_beat(beat)
        stop_worker(worker)


@pytest.fixture(scope="module")
def private_api(
    committed_keys: KeySnapshot,
    system_env: dict[str, str],
    maintenance: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    """Started and not waited for (``runs_worker`` waits)."""
    process = ApiProcess(tmp_path_factory.mktemp("private-api") / "api.log", system_env)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def runs_worker(
    system_env: dict[str, str],
    maintenance: WorkerProcess,
    private_api: ApiProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A runs worker for each test (the first kills its own); once it, the maintenance worker
    and the API are all ready."""
    worker = start_worker(
        tmp_path_factory.mktemp("runs"),
        pool="threads",
        concurrency=8,
        queues="runs",
        env=system_env,
    )
    try:
        wait_until_ready(maintenance)
        private_api.wait()
        wait_until_ready(worker)
        yield worker
    finally:
        stop_worker(worker)


@pytest.fixture
async def api(private_api: ApiProcess, runs_worker: WorkerProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(base_url=private_api.base, timeout=60) as client:
        yield client


async def test_a_worker_killed_mid_run_fails_the_run_and_ends_the_stream(
    api: AsyncClient, runs_worker: WorkerProcess
) -> None:
    alice = await sign_up(api)
    received: list[Frame] = []
    started = 0.0
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": WORDS}, headers=alice
    ) as response:
        events = frames(response)
        await read_until(events, received, 3)
        runs_worker.process.send_signal(signal.SIGKILL)
        runs_worker.process.wait()
        started = time.monotonic()
        async for frame in events:
            received.append(frame)
    waited = time.monotonic() - started

    assert received[-1].event == "run.failed", [f.event for f in received]
    assert received[-1].data["error"]["code"] == "worker_lost"
    assert waited < 60
    ids = [frame.id for frame in received]
    assert ids == list(range(1, len(received) + 1))
    run_id = received[0].data["run_id"]
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()
    assert run["status"] == "failed"
    assert run["error"]["code"] == "worker_lost"
    assert run["finished_at"] is not None
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=alice)
    ).json()
    assert [message["role"] for message in conversation["messages"]] == ["user"]


async def _chat_until_done(
    api: AsyncClient, headers: dict[str, str], timeout: float
) -> list[Frame]:
    async with asyncio.timeout(timeout):
        async with api.stream(
            "POST", "/api/v1/chat/stream", json={"message": "are you back"}, headers=headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            return [frame async for frame in frames(response)]


async def test_a_redis_restart_mid_stream_loses_nothing_that_was_stored(
    api: AsyncClient, runs_worker: WorkerProcess, private_redis: PrivateRedis
) -> None:
    alice = await sign_up(api)
    received: list[Frame] = []
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": WORDS}, headers=alice
    ) as response:
        events = frames(response)
        await read_until(events, received, 5)
        private_redis.stop()
        await asyncio.sleep(0.5)
        private_redis.start()
        async with asyncio.timeout(60):
            async for frame in events:
                received.append(frame)

    # The stream either recovered (every event, once, in order) or said clearly that it
    # could not; either way it ended.
    numbered = [frame for frame in received if frame.id is not None]
    assert [frame.id for frame in numbered] == list(range(1, len(numbered) + 1))
    last = received[-1]
    assert last.event in TERMINAL | {"stream.error"}, [f.event for f in received]
    run_id = received[0].data["run_id"]
    if last.event == "stream.error":
        assert last.data["code"] == "events_lost"
        # Resuming from the last event received answers from whatever survived, then ends.
        async with (
            asyncio.timeout(60),
            api.stream(
                "GET",
                f"/api/v1/runs/{run_id}/stream",
                headers={**alice, "Last-Event-ID": str(numbered[-1].id)},
            ) as resumed,
        ):
            tail = [frame async for frame in frames(resumed)]
        assert tail[-1].event in TERMINAL | {"stream.error"}
    else:
        assert last.event == "run.completed"
        deltas = "".join(f.data["delta"] for f in received if f.event == "message.delta")
        assert deltas == WORDS

    # Whatever the stream saw, the run finished and its whole reply is stored.
    deadline = time.monotonic() + 30
    while (run := (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.2)
    assert run["status"] == "succeeded", run
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=alice)
    ).json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", WORDS),
        ("assistant", WORDS),
    ]

    # New chats work again with no restart of the API or the worker.
    again = await _chat_until_done(api, alice, timeout=60)
    assert again[-1].event == "run.completed", [f.event for f in again]
