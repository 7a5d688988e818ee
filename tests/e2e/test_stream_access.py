"""Opening a run's stream, against a real API process and worker: fresh tickets, what a ticket
may hold open and for how long, and the Last-Event-ID a stream may start after."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.runs.resume import LAST_SEQ
from switchboard.runs.stream_slots import ticket_streams_key
from tests.e2e.conftest import sign_up
from tests.support.auth import forge
from tests.support.plans import put_on_plan
from tests.support.sse import collect
from tests.support.worker import ApiProcess, start_worker, stop_worker, wait_until_ready

# Each word of a reply waits this long: a run of N words stays in flight N / 10 seconds.
TOKEN_DELAY_MS = 100
TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


def _words(count: int) -> str:
    return " ".join(f"word{index}" for index in range(count))


@pytest.fixture(scope="module")
def api_server(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An API process of its own, with no clock-skew leeway, so a ticket stops opening streams
    at its very `exp`; and a runs worker of slow replies. Both start up at once."""
    worker = start_worker(
        tmp_path_factory.mktemp("slow-runs-worker"),
        pool="threads",
        concurrency=8,
        queues="runs",
        env={"LOG_LEVEL": "INFO", "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)},
    )
    try:
        api = ApiProcess(tmp_path_factory.mktemp("api") / "api.log", {"AUTH_LEEWAY_SECONDS": "0"})
        try:
            wait_until_ready(worker)
            api.wait()
            yield api.base
        finally:
            api.stop()
    finally:
        stop_worker(worker)


def _decode(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _ticket(stream_url: str) -> str:
    return stream_url.partition("?ticket=")[2]


async def _unlimited_streams(api: AsyncClient, committed: SessionMaker) -> dict[str, str]:
    """A new member whose plan sets no open-streams limit: only the ticket's cap applies."""
    headers = await sign_up(api)
    claims = _decode(headers["Authorization"].removeprefix("Bearer ").split(".")[1])
    await put_on_plan(committed, uuid.UUID(claims["tid"]), open_streams_per_user=None)
    return headers


async def _until_empty(redis: Redis, key: str) -> None:
    async with asyncio.timeout(10):
        while await redis.zcard(key):
            await asyncio.sleep(0.05)


async def test_a_ticket_holds_at_most_two_streams_open_and_a_fresh_ticket_opens_more(
    api: AsyncClient, committed: SessionMaker, redis: Redis
) -> None:
    headers = await _unlimited_streams(api, committed)
    accepted = (
        await api.post("/api/v1/chat", json={"message": _words(300)}, headers=headers)
    ).json()
    url = accepted["stream_url"]
    ticket_key = ticket_streams_key(_decode(_ticket(url).split(".")[1])["jti"])

    async with api.stream("GET", url) as first, api.stream("GET", url) as second:
        assert (first.status_code, second.status_code) == (200, 200)
        # Kept: a dropped line iterator closes its response.
        held = [first.aiter_lines(), second.aiter_lines()]
        assert [await anext(lines) for lines in held] == ["id: 1", "id: 1"]

        refused = await api.get(url)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "runs.ticket_streams_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1

        fresh = await api.post(f"/api/v1/runs/{accepted['run_id']}/stream-ticket", headers=headers)
        assert fresh.status_code == 200
        async with api.stream("GET", fresh.json()["stream_url"]) as third:
            assert third.status_code == 200
            assert await anext(third.aiter_lines()) == "id: 1"
    # Both streams ended with their clients: the ticket's places come back at once.
    await _until_empty(redis, ticket_key)
    async with api.stream("GET", url) as again:
        assert again.status_code == 200
    cancel = await api.post(f"/api/v1/runs/{accepted['run_id']}/cancel", headers=headers)
    assert cancel.status_code == 202


async def test_an_open_stream_outlives_its_ticket(
    api: AsyncClient, alice: dict[str, str], committed_keys: KeySnapshot
) -> None:
    accepted = (await api.post("/api/v1/chat", json={"message": _words(60)}, headers=alice)).json()
    path, _, ticket = accepted["stream_url"].partition("?ticket=")
    # The same ticket, validly signed, expiring 3 s from now; the run lasts about 6 s.
    header, payload, _ = ticket.split(".")
    claims = {**_decode(payload), "exp": int(time.time()) + 3}
    short_lived = forge(_decode(header), claims, committed_keys.signing_key)

    async with api.stream("GET", f"{path}?ticket={short_lived}") as response:
        assert response.status_code == 200
        frames = await collect(response)

    assert [frame.id for frame in frames] == list(range(1, len(frames) + 1))
    assert frames[-1].event == "run.completed"
    # The ticket had expired while its stream went on to the end.
    assert time.time() > claims["exp"]
    expired = await api.get(f"{path}?ticket={short_lived}", headers={"Last-Event-ID": "1"})
    assert (expired.status_code, expired.json()["code"]) == (401, "auth.invalid_token")


async def test_resuming_at_or_beyond_a_finished_runs_last_event_ends_at_once(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": "short one"}, headers=alice
    ) as response:
        run = await collect(response)
    assert run[-1].event in TERMINAL
    url = f"/api/v1/runs/{run[0].data['run_id']}/stream"

    replies = []
    # Leading zeros change nothing, up to the 64 characters an id may have.
    for after in (str(run[-1].id), str(LAST_SEQ), str(LAST_SEQ).zfill(64)):
        async with api.stream("GET", url, headers={**alice, "Last-Event-ID": after}) as each:
            replies.append((each.status_code, await collect(each)))
    async with api.stream("GET", url, params={"last_event_id": "0001"}, headers=alice) as resumed:
        after_the_first = await collect(resumed)
    beyond = await api.get(url, headers={**alice, "Last-Event-ID": "99999999999999999999"})

    assert replies == [(200, []), (200, []), (200, [])]
    assert after_the_first == run[1:]
    assert (beyond.status_code, beyond.json()["code"]) == (422, "run.invalid_last_event_id")


async def test_resuming_beyond_a_running_runs_last_event_waits_for_its_end_and_closes(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    accepted = (await api.post("/api/v1/chat", json={"message": _words(20)}, headers=alice)).json()
    url = f"/api/v1/runs/{accepted['run_id']}/stream"

    async with api.stream(
        "GET", url, params={"last_event_id": str(LAST_SEQ)}, headers=alice
    ) as response:
        assert response.status_code == 200
        frames = await collect(response)

    assert frames == []
    run = (await api.get(f"/api/v1/runs/{accepted['run_id']}", headers=alice)).json()
    assert run["status"] == "succeeded"
