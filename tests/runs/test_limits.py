"""Plan limits at the chat routes, in one process (no worker runs the runs here); the edges
across two API processes and real workers are in tests/e2e/test_limits.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from switchboard.auth.principal import Principal
from switchboard.billing.schemas import PlanLimits, TenantPlan
from switchboard.billing.service import BillingService
from switchboard.kit.db import SessionMaker
from switchboard.kit.uow import UnitOfWork
from switchboard.models import Run
from switchboard.runs.admission import Admission, RunSlots, slots_key, tokens_key
from switchboard.runs.events import EventPublisher, replay
from switchboard.runs.repository import RunRepository
from switchboard.runs.schemas import ChatRequest
from switchboard.runs.service import RunService
from switchboard.runs.settings import RunsSettings
from switchboard.runs.sweep import reconcile_slots, sweep_runs
from switchboard.settings import Settings
from tests.runs.test_executor import _running
from tests.support.members import NewMember
from tests.support.plans import put_on_plan
from workers.celery_app import job_sender

RUNS_QUEUES = ("runs", "runs\x06\x163", "runs\x06\x166", "runs\x06\x169")


async def _runs_of(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Run).where(Run.tenant_id == tenant_id)
        )
    return int(count or 0)


async def _queued_jobs(redis: Redis) -> int:
    return sum([await redis.llen(queue) for queue in RUNS_QUEUES])


async def test_runs_per_minute_admits_exactly_the_limit_then_429_storing_nothing(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, runs_per_minute=3)

    answers = [
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
        for _ in range(3)
    ]

    assert [answer.status_code for answer in answers] == [202, 202, 202]
    assert {answer.headers["RateLimit-Policy"] for answer in answers} == {'"runs";q=3;w=60'}
    remaining = [answer.headers["RateLimit"].split(";")[1] for answer in answers]
    assert remaining == ["r=2", "r=1", "r=0"]
    assert answers[-1].headers["RateLimit"].endswith(";t=60")
    jobs_before = await _queued_jobs(redis)

    refused = await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "runs.rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # one run every 20 s
    assert refused.headers["RateLimit"].startswith('"runs";r=0;')
    assert await _runs_of(sessionmaker, alice.tenant_id) == 3
    assert await _queued_jobs(redis) == jobs_before
    assert await redis.zcard(slots_key(alice.tenant_id)) == 3


async def test_concurrent_runs_refuse_the_next_until_a_slot_is_given_back(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, concurrent_runs=2)
    first = await client.post("/api/v1/chat", json={"message": "a"}, headers=alice.headers)
    second = await client.post("/api/v1/chat", json={"message": "b"}, headers=alice.headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert "RateLimit" not in first.headers  # no per-minute limit on this plan

    refused = await client.post("/api/v1/chat", json={"message": "c"}, headers=alice.headers)

    assert refused.status_code == 429
    assert refused.json()["code"] == "runs.concurrency_limited"
    assert refused.headers["Retry-After"] == "2"
    assert await _runs_of(sessionmaker, alice.tenant_id) == 2

    # A worker ending the first run gives its slot back.
    assert await RunSlots(redis).release(alice.tenant_id, uuid.UUID(first.json()["run_id"]))
    again = await client.post("/api/v1/chat", json={"message": "c"}, headers=alice.headers)
    assert again.status_code == 202


async def test_a_chat_whose_rows_never_commit_gives_its_admission_back(
    new_member: NewMember, sessionmaker: SessionMaker, redis: Redis, settings: Settings
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, runs_per_minute=2, concurrent_runs=1)
    admission = Admission(redis, settings.runs)
    principal = Principal(alice.user_id, alice.tenant_id, frozenset({"owner"}), "t")

    for _ in range(3):  # each time admitted, then the transaction fails: all given back
        with pytest.raises(RuntimeError):
            async with UnitOfWork(sessionmaker, job_sender) as uow:
                runs = RunService(
                    settings.runs,
                    EventPublisher(redis, max_events=100, ttl_seconds=60),
                    RunRepository(uow.session),
                    admission,
                )
                await runs.start(
                    principal,
                    ChatRequest(message="hi"),
                    agents={"triage"},
                    default_agent="triage",
                    jobs=uow.jobs,
                )
                assert await redis.zcard(slots_key(alice.tenant_id)) == 1
                raise RuntimeError("the commit never happens")
        assert await redis.zcard(slots_key(alice.tenant_id)) == 0

    assert await _runs_of(sessionmaker, alice.tenant_id) == 0
    limits = (await _plan_of(sessionmaker, alice.tenant_id)).limits
    assert await admission.remaining_this_minute(alice.tenant_id, limits) == 2


async def _plan_of(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> TenantPlan:
    async with sessionmaker() as session:
        return await BillingService(session).tenant_plan(tenant_id)


async def test_a_chat_in_an_unknown_conversation_is_404_before_any_limit(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, runs_per_minute=1, concurrent_runs=1)
    assert (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).status_code == 202

    missing = await client.post(
        "/api/v1/chat",
        json={"message": "hi", "conversation_id": str(uuid.uuid4())},
        headers=alice.headers,
    )

    assert missing.status_code == 404
    assert await redis.zcard(slots_key(alice.tenant_id)) == 1


async def test_monthly_tokens_used_up_answer_402(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, monthly_tokens=100)
    assert (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).status_code == 202
    # What a finished run's release does to the month's figure, seeded by that admission.
    key = tokens_key(alice.tenant_id, datetime.now(UTC))
    assert await redis.get(key) == b"0"
    await RunSlots(redis).release(alice.tenant_id, uuid.uuid4(), tokens=100)

    refused = await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)

    assert refused.status_code == 402
    assert refused.json()["code"] == "billing.quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert await _runs_of(sessionmaker, alice.tenant_id) == 1


async def test_usage_shows_limits_and_what_remains(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, runs_per_minute=5, monthly_tokens=1000)
    await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)

    usage = (await client.get("/api/v1/billing/usage", headers=alice.headers)).json()

    assert usage["limits"] == {
        "seats": 1,
        "runs_per_minute": 5,
        "concurrent_runs": None,
        "monthly_tokens": 1000,
        "open_streams_per_user": None,
    }
    assert usage["remaining"] == {"monthly_tokens": 1000, "runs_this_minute": 4}


async def test_free_plan_usage_remaining(client: AsyncClient, new_member: NewMember) -> None:
    bob = await new_member()

    usage = (await client.get("/api/v1/billing/usage", headers=bob.headers)).json()

    assert usage["limits"]["runs_per_minute"] == 10
    assert usage["remaining"] == {"monthly_tokens": 200_000, "runs_this_minute": 10}


async def test_two_processes_admitting_at_once_admit_exactly_the_limit(
    settings: Settings, redis: Redis, new_member: NewMember, sessionmaker: SessionMaker
) -> None:
    """Many admissions racing (each API process has its own Admission): the Lua call is the
    only place that decides, so the count is exact."""
    alice = await new_member()
    tenant = alice.tenant_id
    await put_on_plan(sessionmaker, tenant, runs_per_minute=7, concurrent_runs=4)
    processes = [Admission(redis, settings.runs), Admission(redis, settings.runs)]
    plan = TenantPlan(
        plan_code="p",
        limits=PlanLimits(
            seats=None,
            runs_per_minute=7,
            concurrent_runs=4,
            monthly_tokens=None,
            open_streams_per_user=None,
        ),
    )

    async def load(_: uuid.UUID) -> TenantPlan:
        return plan

    async def tokens(_: uuid.UUID) -> int:
        return 0

    async def attempt(index: int) -> bool:
        try:
            await processes[index % 2].admit(
                tenant, uuid.uuid4(), load_plan=load, load_tokens=tokens
            )
        except Exception:
            return False
        return True

    results = await asyncio.gather(*(attempt(index) for index in range(40)))
    assert sum(results) == 4  # the concurrency limit binds first
    assert await redis.zcard(slots_key(tenant)) == 4


async def test_the_sweep_takes_back_slots_of_ended_lost_and_never_stored_runs(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, concurrent_runs=5)
    ids = []
    for _ in range(3):
        accepted = await client.post("/api/v1/chat", json={"message": "x"}, headers=alice.headers)
        ids.append(uuid.UUID(accepted.json()["run_id"]))
    finished, lost, live = ids
    slots = RunSlots(redis)
    settings = RunsSettings(queue_timeout_seconds=60, slot_grace_seconds=30)
    now = await slots.redis_time()
    young, old = uuid.uuid4(), uuid.uuid4()  # admitted, never stored (the API process died)
    await redis.zadd(slots_key(alice.tenant_id), {str(young): now * 1000})
    await redis.zadd(slots_key(alice.tenant_id), {str(old): (now - 31) * 1000})
    async with sessionmaker() as session, session.begin():
        # One ended without giving its slot back; one's job was lost an age ago.
        await session.execute(update(Run).where(Run.id == finished).values(status="succeeded"))
        await session.execute(
            update(Run)
            .where(Run.id == lost)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=120))
        )

    report = await sweep_runs(
        sessionmaker,
        redis,
        EventPublisher(redis, max_events=100, ttl_seconds=60),
        settings,
        slots=slots,
    )

    assert report.expired >= 1  # the lost job's run failed with queue_timeout
    held = {run_id for run_id, _ in await slots.held(alice.tenant_id)}
    assert held == {live, young}
    assert report.reclaimed >= 3
    # Nothing left to take back on the next pass.
    assert await reconcile_slots(sessionmaker, slots, settings) == 0


async def test_a_failed_run_gives_its_slot_back_before_its_terminal_event(
    engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    executor, run, progress = await _running(sessionmaker, sessionmaker, redis, settings)
    executor.slots = RunSlots(redis)
    await redis.zadd(slots_key(run.tenant_id), {str(run.id): 1})

    await executor._finish_failed(run, progress, "agent_error", "boom")

    assert await redis.zcard(slots_key(run.tenant_id)) == 0
    events = await replay(redis, str(run.id), after=0)
    assert events[-1].type == "run.failed"
