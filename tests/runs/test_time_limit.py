"""A run past RUNS_MAX_SECONDS is stopped and failed with the code timeout, through the real API
and a real runs worker: one terminal event, no reply kept, its slot and its lease given back; on
a real provider over HTTP, the model's stream is closed.

Each class has its own runs worker (class scope): two workers on the runs queue at once would
share its runs."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.runs.admission import slots_key
from switchboard.runs.events import lease_key
from switchboard.runs.failures import TIMEOUT
from tests.e2e.conftest import sign_up
from tests.support.openai_server import OpenAIServer
from tests.support.plans import put_on_plan
from tests.support.sse import collect
from tests.support.waiting import eventually
from tests.support.worker import ApiProcess, WorkerProcess, runs_worker_process

# 60 words at 100 ms each: the reply would take 6 s, five times the run's limit.
TOKEN_DELAY_MS = 100
LONG = " ".join(f"word{index}" for index in range(60))


def _limited_worker(tmp_dir: Path, **env: str) -> Iterator[WorkerProcess]:
    with runs_worker_process(
        tmp_dir, concurrency=4, env={"RUNS_MAX_SECONDS": "1", **env}
    ) as process:
        yield process


# Each worker takes the started API: its class's worker and the API start up at once.
@pytest.fixture(scope="class")
def offline_worker(
    started_api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    yield from _limited_worker(
        tmp_path_factory.mktemp("offline-worker"),
        OFFLINE_MODEL_TOKEN_DELAY_MS=str(TOKEN_DELAY_MS),
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[OpenAIServer]:
    with OpenAIServer(token_delay=TOKEN_DELAY_MS / 1000) as server:
        yield server


@pytest.fixture(scope="class")
def provider_worker(
    started_api: ApiProcess, provider: OpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    yield from _limited_worker(
        tmp_path_factory.mktemp("provider-worker"),
        OPENAI_API_KEY="sk-test-provider",
        OPENAI_BASE_URL=provider.base_url,
    )


@pytest.fixture(scope="module")
def started_api(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """Started and not waited for (``api_server`` waits)."""
    process = ApiProcess(tmp_path_factory.mktemp("api") / "api.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def api_server(started_api: ApiProcess) -> str:
    started_api.wait()
    return started_api.base


def _tenant(headers: dict[str, str]) -> uuid.UUID:
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["tid"])


async def _timed_out_run(
    api: AsyncClient, committed: SessionMaker, redis: Redis, worker: WorkerProcess
) -> None:
    """Chats LONG on a plan of one concurrent run; checks how the run ended."""
    headers = await sign_up(api)
    tenant_id = _tenant(headers)
    await put_on_plan(committed, tenant_id, concurrent_runs=1)

    body = {"message": LONG}
    async with api.stream("POST", "/api/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        frames = await collect(response)

    kinds = [frame.event for frame in frames]
    assert kinds[:2] == ["run.queued", "run.started"]
    # Part of the reply went out before the limit; it was never completed, and never kept.
    assert "message.delta" in kinds
    assert "message.completed" not in kinds
    assert kinds[-1] == "run.failed"
    assert [kind in {"run.completed", "run.failed", "run.cancelled"} for kind in kinds].count(
        True
    ) == 1
    error = {"code": TIMEOUT.code, "message": TIMEOUT.message}
    assert frames[-1].data["error"] == error

    run_id = frames[0].data["run_id"]
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=headers)).json()
    assert (run["status"], run["error"]) == ("failed", error)
    conversation_id = frames[0].data["conversation_id"]
    conversation = (
        await api.get(f"/api/v1/conversations/{conversation_id}", headers=headers)
    ).json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [("user", LONG)]

    # The slot goes back before run.failed goes out; the lease is dropped just after.
    assert await redis.zcard(slots_key(tenant_id)) == 0
    await eventually(lambda: _gone(redis, lease_key(run_id)))
    assert (
        await api.post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    ).status_code == 202
    logged = [line for line in worker.log().splitlines() if run_id in line]
    assert any('"event": "runs.timed_out"' in line for line in logged)


class TestOfflineModel:
    async def test_a_run_past_its_time_limit_fails_with_timeout_and_keeps_no_reply(
        self,
        api: AsyncClient,
        committed: SessionMaker,
        redis: Redis,
        offline_worker: WorkerProcess,
    ) -> None:
        await _timed_out_run(api, committed, redis, offline_worker)


class TestProvider:
    async def test_a_run_past_its_time_limit_closes_the_providers_stream(
        self,
        api: AsyncClient,
        committed: SessionMaker,
        redis: Redis,
        provider: OpenAIServer,
        provider_worker: WorkerProcess,
    ) -> None:
        provider.reset()
        await _timed_out_run(api, committed, redis, provider_worker)

        # The worker hung up on the provider's stream: it stopped before the reply's end.
        assert len(provider.requests) == 1
        gone = provider.wait_for_disconnect()
        assert gone.request_index == 0
        assert 0 < gone.deltas_sent < len(LONG.split())


async def _gone(redis: Redis, key: str) -> bool | None:
    return True if not await redis.exists(key) else None
