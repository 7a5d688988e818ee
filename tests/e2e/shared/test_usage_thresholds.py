"""Usage thresholds through the whole system: chats through the API, runs on a real runs
worker, thresholds recorded after each run's commit and counted on the worker's /metrics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import select

from switchboard.billing.limits import set_plan_limits
from switchboard.kit.db import SessionMaker
from switchboard.models import UsageThreshold
from tests.billing.test_limits import drop_plan, scratch_plan, subscribe
from tests.e2e.shared.test_chat import chat_stream
from tests.support.metrics import sample
from tests.support.waiting import eventually


@pytest.fixture
async def plan(committed: SessionMaker) -> AsyncIterator[str]:
    """A plan of its own, unlimited tokens to begin with; removed afterwards."""
    code = await scratch_plan(committed, monthly_tokens=None)
    yield code
    await drop_plan(committed, code)


async def thresholds(committed: SessionMaker, tenant_id: uuid.UUID) -> list[tuple[int, int, int]]:
    async with committed() as session:
        rows = await session.execute(
            select(UsageThreshold.percent, UsageThreshold.tokens, UsageThreshold.limit_tokens)
            .where(UsageThreshold.tenant_id == tenant_id)
            .order_by(UsageThreshold.percent)
        )
        return [(percent, tokens, limit) for percent, tokens, limit in rows]


async def chat(api: AsyncClient, headers: dict[str, str], message: str) -> int:
    """A chat in a new conversation, streamed to its end; the run's tokens."""
    frames = await chat_stream(api, headers, message=message)
    assert frames[-1].event == "run.completed", frames[-1]
    usage = frames[-1].data["usage"]
    return int(usage["input_tokens"]) + int(usage["output_tokens"])


async def recorded(
    committed: SessionMaker, tenant_id: uuid.UUID, count: int
) -> list[tuple[int, int, int]] | None:
    """The tenant's thresholds once there are ``count`` of them (recorded after the run's
    terminal event went out)."""
    rows = await thresholds(committed, tenant_id)
    return rows if len(rows) >= count else None


def counted(metrics: str, percent: int) -> float:
    return sample(metrics, "billing_usage_thresholds_total", percent=str(percent)) or 0.0


async def test_crossing_80_then_100_percent_is_recorded_once_each(
    api: AsyncClient,
    alice: dict[str, str],
    committed: SessionMaker,
    plan: str,
    runs_worker: str,
) -> None:
    me = (await api.get("/api/v1/auth/me", headers=alice)).json()
    tenant = uuid.UUID(me["tenant"]["id"])
    await subscribe(committed, tenant, plan)
    before = counted(httpx.get(runs_worker, timeout=5).text, 80)
    message = "how many tokens does this use"

    # Unlimited tokens: nothing to record.
    first = await chat(api, alice, message)
    assert first > 0

    # The limit the operator sets now puts two runs at 2/2.25 (89%) and three past 100%.
    limit = 2 * first + first // 4
    async with committed() as session, session.begin():
        await set_plan_limits(session, plan, {"monthly_tokens": limit})

    second = await chat(api, alice, message)
    assert second == first
    assert await eventually(lambda: recorded(committed, tenant, 1)) == [(80, 2 * first, limit)]
    assert counted(httpx.get(runs_worker, timeout=5).text, 80) == before + 1

    third = await chat(api, alice, message)
    assert third == first
    assert await eventually(lambda: recorded(committed, tenant, 2)) == [
        (80, 2 * first, limit),
        (100, 3 * first, limit),
    ]
