"""Plan limits at their edges: two real API processes admitting at once, a real runs worker,
slots given back however a run ends, streams per user, and the sweep after a killed worker."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from celery import Celery
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import Run, UsageRecord
from switchboard.runs.admission import RunSlots, slots_key
from switchboard.runs.events import EventPublisher
from switchboard.runs.settings import RunsSettings
from switchboard.runs.stream_slots import streams_key
from switchboard.runs.sweep import sweep_runs
from tests.e2e.conftest import sign_up
from tests.support.plans import put_on_plan
from tests.support.worker import (
    ApiProcess,
    WorkerProcess,
    runs_worker_process,
    start_worker,
    stop_worker,
    take_queue,
    wait_until_ready,
)
from tests.support.worker_app import IDLE_QUEUE

# Each word of a reply waits this long, so a run of LONG stays in flight for about 2 s.
TOKEN_DELAY_MS = 50
LONG = " ".join(f"word{index}" for index in range(40))
LEASE_SECONDS = 3


@pytest.fixture(scope="module")
def doomed_api(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """The API process that a test kills, with stream slots of 6 s; it starts up with the
    module's worker."""
    process = ApiProcess(
        tmp_path_factory.mktemp("doomed-api") / "api.log", {"RUNS_STREAM_SLOT_SECONDS": "6"}
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def fair_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """The one runs worker (one run at a time) of the last test, started with the module's
    on a queue that no task goes to: it starts up meanwhile, and takes the runs queue when
    the test says so."""
    process = start_worker(
        tmp_path_factory.mktemp("fair-worker"),
        pool="threads",
        concurrency=1,
        queues=IDLE_QUEUE,
        env={"LOG_LEVEL": "INFO"},  # its "ready." line
    )
    try:
        yield process
    finally:
        stop_worker(process)


@pytest.fixture(scope="module", autouse=True)
def limits_worker(
    started_apis: tuple[ApiProcess, ApiProcess],
    doomed_api: ApiProcess,
    fair_worker: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """Started after the API processes and the other processes of the module, so that they
    all start up at once."""
    with runs_worker_process(
        tmp_path_factory.mktemp("limits-worker"),
        env={
            "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
            "RUNS_LEASE_SECONDS": str(LEASE_SECONDS),
        },
    ) as process:
        yield process


def _tenant(headers: dict[str, str]) -> uuid.UUID:
    token = headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["tid"])


async def _member_on_plan(
    api: AsyncClient, committed: SessionMaker, **limits: int | None
) -> tuple[dict[str, str], uuid.UUID]:
    headers = await sign_up(api)
    tenant_id = _tenant(headers)
    await put_on_plan(committed, tenant_id, **limits)
    return headers, tenant_id


async def _chat_all(
    apis: tuple[AsyncClient, AsyncClient], headers: dict[str, str], count: int, message: str
) -> list[httpx.Response]:
    """``count`` chats at once, alternating between the two API processes."""
    return list(
        await asyncio.gather(
            *(
                apis[index % 2].post("/api/v1/chat", json={"message": message}, headers=headers)
                for index in range(count)
            )
        )
    )


async def _until(check, timeout: float = 30, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(every)


async def _status(api: AsyncClient, headers: dict[str, str], run_id: str) -> str:
    status: str = (await api.get(f"/api/v1/runs/{run_id}", headers=headers)).json()["status"]
    return status


async def _runs_of(committed: SessionMaker, tenant_id: uuid.UUID) -> list[Run]:
    async with committed() as session:
        return list((await session.scalars(select(Run).where(Run.tenant_id == tenant_id))).all())


async def _all_finished(committed: SessionMaker, tenant_id: uuid.UUID) -> bool:
    return all(run.finished_at is not None for run in await _runs_of(committed, tenant_id))


async def test_runs_per_minute_at_its_edge_across_two_api_processes(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker
) -> None:
    headers, tenant_id = await _member_on_plan(apis[0], committed, runs_per_minute=6)

    answers = await _chat_all(apis, headers, 16, "hi")

    admitted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert len(admitted) == 6
    assert {answer.status_code for answer in refused} == {429}
    assert {answer.json()["code"] for answer in refused} == {"runs.rate_limited"}
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in refused)
    assert all(answer.headers["RateLimit-Policy"] == '"runs";q=6;w=60' for answer in admitted)
    remaining = sorted(int(a.headers["RateLimit"].split(";")[1][2:]) for a in admitted)
    assert remaining == [0, 1, 2, 3, 4, 5]
    assert len(await _runs_of(committed, tenant_id)) == 6


async def test_chat_stream_answers_carry_the_rate_limit_fields(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker
) -> None:
    headers, _ = await _member_on_plan(apis[0], committed, runs_per_minute=5)

    async with apis[1].stream(
        "POST", "/api/v1/chat/stream", json={"message": "hi"}, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["RateLimit-Policy"] == '"runs";q=5;w=60'
        assert response.headers["RateLimit"] == '"runs";r=4;t=12'
        body = (await response.aread()).decode()
    assert "event: run.completed" in body


async def test_concurrent_runs_at_their_edge_and_given_back_when_runs_succeed(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker, redis: Redis
) -> None:
    headers, tenant_id = await _member_on_plan(apis[0], committed, concurrent_runs=2)

    answers = await _chat_all(apis, headers, 8, LONG)

    admitted = [answer.json()["run_id"] for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code != 202]
    assert len(admitted) == 2
    assert {answer.json()["code"] for answer in refused} == {"runs.concurrency_limited"}
    assert len(await _runs_of(committed, tenant_id)) == 2
    for run_id in admitted:
        await _until(lambda run_id=run_id: _done(apis[0], headers, run_id, "succeeded"), timeout=60)
    assert await redis.zcard(slots_key(tenant_id)) == 0
    again = await _chat_all(apis, headers, 2, "hi")
    assert [answer.status_code for answer in again] == [202, 202]


async def _done(api: AsyncClient, headers: dict[str, str], run_id: str, status: str) -> bool:
    return await _status(api, headers, run_id) == status


async def test_a_cancelled_run_gives_its_slot_back(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker, redis: Redis
) -> None:
    headers, tenant_id = await _member_on_plan(apis[0], committed, concurrent_runs=1)
    run_id = (await apis[0].post("/api/v1/chat", json={"message": LONG}, headers=headers)).json()[
        "run_id"
    ]
    await _until(lambda: _done(apis[0], headers, run_id, "running"))
    busy = await apis[1].post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    assert busy.json()["code"] == "runs.concurrency_limited"

    cancel = await apis[1].post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert cancel.status_code == 202

    await _until(lambda: _done(apis[0], headers, run_id, "cancelled"))
    assert await redis.zcard(slots_key(tenant_id)) == 0
    assert (
        await apis[1].post("/api/v1/chat", json={"message": "hi"}, headers=headers)
    ).status_code == 202


async def test_402_once_the_months_tokens_are_used_while_a_run_in_flight_finishes_billed(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker
) -> None:
    headers, tenant_id = await _member_on_plan(apis[0], committed, monthly_tokens=10)
    slow = await apis[0].post("/api/v1/chat", json={"message": LONG}, headers=headers)
    fast = await apis[1].post("/api/v1/chat", json={"message": "a b c d e"}, headers=headers)
    assert (slow.status_code, fast.status_code) == (202, 202)
    slow_id, fast_id = slow.json()["run_id"], fast.json()["run_id"]
    await _until(lambda: _done(apis[0], headers, fast_id, "succeeded"))
    assert await _status(apis[0], headers, slow_id) == "running"

    refused = await apis[1].post("/api/v1/chat", json={"message": "more"}, headers=headers)

    assert refused.status_code == 402
    assert refused.json()["code"] == "billing.quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    await _until(lambda: _done(apis[0], headers, slow_id, "succeeded"), timeout=60)
    async with committed() as session:
        billed = await session.scalar(
            select(UsageRecord).where(UsageRecord.run_id == uuid.UUID(slow_id))
        )
    assert billed is not None
    assert billed.output_tokens == 40
    usage = (await apis[0].get("/api/v1/billing/usage", headers=headers)).json()
    assert usage["remaining"]["monthly_tokens"] == 0
    assert usage["limits"]["monthly_tokens"] == 10
    assert len(await _runs_of(committed, tenant_id)) == 2


async def test_open_streams_per_user_across_processes_and_given_back_on_disconnect(
    apis: tuple[AsyncClient, AsyncClient], committed: SessionMaker, redis: Redis
) -> None:
    headers, tenant_id = await _member_on_plan(apis[0], committed, open_streams_per_user=1)
    accepted = (await apis[0].post("/api/v1/chat", json={"message": LONG}, headers=headers)).json()
    user_key = await _only_streams_key(redis, headers)

    async with apis[0].stream("GET", accepted["stream_url"]) as first:
        assert first.status_code == 200
        lines = first.aiter_lines()  # kept: a dropped iterator closes the response
        await anext(lines)
        second = await apis[1].get(accepted["stream_url"])
        assert second.status_code == 429
        assert second.json()["code"] == "runs.too_many_streams"
        assert int(second.headers["Retry-After"]) >= 1
        chat_stream = await apis[1].post(
            "/api/v1/chat/stream", json={"message": "hi"}, headers=headers
        )
        assert chat_stream.status_code == 429
        assert len(await _runs_of(committed, tenant_id)) == 1  # stored nothing
    # The client left: its slot comes back at once.
    await _until(lambda: _zero(redis, user_key), timeout=5)
    async with apis[1].stream("GET", accepted["stream_url"]) as again:
        assert again.status_code == 200


async def _only_streams_key(redis: Redis, headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return streams_key(uuid.UUID(claims["sub"]))


async def _zero(redis: Redis, key: str) -> bool:
    return await redis.zcard(key) == 0


async def test_a_killed_api_process_frees_its_stream_slots_within_the_slot_time(
    apis: tuple[AsyncClient, AsyncClient],
    committed: SessionMaker,
    redis: Redis,
    doomed_api: ApiProcess,
) -> None:
    headers, _ = await _member_on_plan(apis[0], committed, open_streams_per_user=1)
    accepted = (await apis[0].post("/api/v1/chat", json={"message": LONG}, headers=headers)).json()
    doomed_api.wait()
    async with (
        AsyncClient(base_url=doomed_api.base, timeout=30) as doomed,
        doomed.stream("GET", accepted["stream_url"]) as held,
    ):
        assert held.status_code == 200
        lines = held.aiter_lines()
        await anext(lines)
        doomed_api.process.kill()  # SIGKILL: no finally runs, nothing is given back
        doomed_api.process.wait()
    refused = await apis[1].get(accepted["stream_url"])
    assert refused.status_code == 429
    started = time.monotonic()

    async def opens() -> bool:
        async with apis[1].stream("GET", accepted["stream_url"]) as attempt:
            return attempt.status_code == 200

    await _until(opens, timeout=15, every=0.5)
    assert time.monotonic() - started <= 8


async def test_a_failed_run_by_a_killed_worker_gives_its_slot_back_through_the_sweep(
    apis: tuple[AsyncClient, AsyncClient],
    committed: SessionMaker,
    redis: Redis,
    limits_worker: WorkerProcess,
) -> None:
    """Last in the module: it kills the module's worker."""
    headers, tenant_id = await _member_on_plan(apis[0], committed, concurrent_runs=1)
    run_id = (
        await apis[0].post("/api/v1/chat", json={"message": LONG * 5}, headers=headers)
    ).json()["run_id"]
    await _until(lambda: _done(apis[0], headers, run_id, "running"))
    limits_worker.process.kill()
    limits_worker.process.wait()
    assert await redis.zcard(slots_key(tenant_id)) == 1
    settings = RunsSettings(lease_seconds=LEASE_SECONDS)
    publisher = EventPublisher(redis, max_events=100, ttl_seconds=60)
    slots = RunSlots(redis)

    async def swept() -> bool:
        await sweep_runs(committed, redis, publisher, settings, slots=slots)
        return await _done(apis[0], headers, run_id, "failed")

    await _until(swept, timeout=30, every=1)
    assert await redis.zcard(slots_key(tenant_id)) == 0
    assert (await apis[1].post("/api/v1/chat", json={"message": "hi"}, headers=headers)).json()[
        "status"
    ] == "queued"


async def test_a_tenants_backlog_does_not_hold_another_tenants_run_back(
    apis: tuple[AsyncClient, AsyncClient],
    committed: SessionMaker,
    celery_app: Celery,
    fair_worker: WorkerProcess,
) -> None:
    """After the test above no runs worker consumes: a backlog builds in the broker, then one
    worker (one run at a time) drains it. The newcomer's first run in flight goes first."""
    flooder, flooder_id = await _member_on_plan(apis[0], committed)  # no limits at all
    newcomer, newcomer_id = await _member_on_plan(apis[1], committed)
    backlog = await _chat_all(apis, flooder, 20, "hi")
    assert {answer.status_code for answer in backlog} == {202}
    late = await apis[1].post("/api/v1/chat", json={"message": "hi"}, headers=newcomer)
    assert late.status_code == 202
    try:
        wait_until_ready(fair_worker)
        take_queue(celery_app, fair_worker)
        await _until(
            lambda: _done(apis[1], newcomer, late.json()["run_id"], "succeeded"), timeout=60
        )
        # The rest of the backlog too: no run is left in the broker for the next module's
        # runs worker to take.
        await _until(lambda: _all_finished(committed, flooder_id), timeout=60)
    finally:
        stop_worker(fair_worker)
    flooded = await _runs_of(committed, flooder_id)
    (newcomers,) = await _runs_of(committed, newcomer_id)
    assert newcomers.started_at is not None
    before = [run for run in flooded if run.started_at and run.started_at < newcomers.started_at]
    # Only the flooder's first run (also first in flight, so as urgent) may go before it.
    assert len(before) <= 1
