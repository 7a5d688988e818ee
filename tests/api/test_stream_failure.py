"""A stream that fails after it started ends with ``stream.error`` and a clean end of the body,
served by a real API process, so the HTTP framing is uvicorn's own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from switchboard.auth.keyring import KeySnapshot
from switchboard.runs.events import channel, stream_key
from tests.support.sse import Frame, frames
from tests.support.worker import api_process

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def api_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api") / "api.log"


@pytest.fixture(scope="module")
def api_server(committed_keys: KeySnapshot, api_log: Path) -> Iterator[str]:
    with api_process(api_log) as base:
        yield base


async def chat(api: AsyncClient) -> dict[str, str]:
    """A queued run of a new tenant's owner (no worker runs it): its id and stream URL."""
    email = f"stream-{uuid.uuid4().hex[:10]}@example.com"
    registered = await api.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "T"}
    )
    assert registered.status_code == 201, registered.text
    pair = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {pair.json()['access_token']}"}
    accepted = await api.post("/api/v1/chat", json={"message": "hello"}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return dict(accepted.json())


async def corrupt_the_buffer(redis: Redis, run_id: str) -> None:
    """Event 2 in the replay buffer does not decode; event 3 arrives live, so the stream reads
    the buffer for the event it missed."""
    await redis.xadd(stream_key(run_id), {"type": "run.started", "data": "{not json"}, id="2-1")
    live = json.dumps({"run_id": run_id, "seq": 3, "agent": "triage"})
    await redis.publish(channel(run_id), f"run.started\t3\t{live}")


async def test_a_relay_that_fails_mid_stream_ends_with_stream_error(
    api: AsyncClient, redis: Redis, api_log: Path
) -> None:
    run = await chat(api)
    received: list[Frame] = []

    async with api.stream("GET", run["stream_url"]) as response:
        assert response.status_code == 200
        # Reading to the end raises if the body is cut short instead of ended.
        async for frame in frames(response):
            received.append(frame)
            if frame.event == "run.queued":
                await corrupt_the_buffer(redis, run["run_id"])

    assert [frame.event for frame in received] == ["run.queued", "stream.error"]
    error = received[-1]
    assert error.id is None  # Last-Event-ID stays at the last event really received
    assert error.data["run_id"] == run["run_id"]
    assert error.data["code"] == "stream_failed"
    assert "not json" not in error.data["message"]
    log = api_log.read_text()
    assert "runs.stream_failed" in log
    assert "Exception in ASGI application" not in log
