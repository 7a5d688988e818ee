"""Billing endpoints through the real app: role guards, tenant isolation, reads from our tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from switchboard.kit.db import SessionMaker
from switchboard.models import Subscription
from tests.billing.conftest import new_tenant, record_usage
from tests.support.members import NewMember

URL = "/api/v1/billing/subscription"
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.usefixtures("committed_keys", "priced_plans", "stripe_api")


@pytest.fixture
async def tenant(sessionmaker: SessionMaker) -> uuid.UUID:
    return await new_tenant(sessionmaker)


@pytest.fixture
async def as_role(new_member: NewMember, tenant: uuid.UUID) -> dict[str, dict[str, str]]:
    """A member of the tenant in each role: billing reads the role from Postgres."""
    return {
        role: (await new_member(tenant_id=tenant, role=role)).headers
        for role in ("owner", "admin", "billing", "member")
    }


async def test_plans_are_listed_cheapest_first(
    client: AsyncClient, as_role: dict[str, dict[str, str]]
) -> None:
    response = await client.get("/api/v1/billing/plans", headers=as_role["member"])

    assert response.status_code == 200
    plans = response.json()
    assert [plan["code"] for plan in plans] == ["free", "starter", "team", "business"]
    assert {"code", "name", "seat_price_cents", "included_tokens", "limits"} <= set(plans[0])
    assert plans[0]["limits"] == {
        "seats": 3,
        "runs_per_minute": 10,
        "concurrent_runs": 2,
        "monthly_tokens": 200_000,
        "open_streams_per_user": 5,
    }
    assert plans[-1]["limits"]["seats"] is None  # unlimited


async def test_billing_needs_a_token(client: AsyncClient) -> None:
    assert (await client.get("/api/v1/billing/plans")).status_code == 401
    assert (await client.post(URL, json={"plan_code": "team"})).status_code == 401


@pytest.mark.parametrize("role", ["owner", "admin", "billing"])
async def test_managers_subscribe_change_and_cancel(
    client: AsyncClient,
    sessionmaker: SessionMaker,
    as_role: dict[str, dict[str, str]],
    tenant: uuid.UUID,
    role: str,
) -> None:
    headers = as_role[role]

    started = await client.post(URL, json={"plan_code": "team", "seats": 4}, headers=headers)
    changed = await client.patch(URL, json={"plan_code": "business"}, headers=headers)
    canceled = await client.delete(URL, headers=headers)
    current = await client.get(URL, headers=as_role["member"])

    assert started.status_code == 201, started.text
    assert started.json()["status"] == "pending"
    assert started.json()["seats"] == 4  # the tenant's four members
    assert changed.status_code == 200
    assert changed.json()["plan_code"] == "business"
    assert canceled.status_code == 200
    assert canceled.json()["cancel_at_period_end"] is True
    assert current.status_code == 200
    assert set(current.json()) == {
        "plan_code",
        "status",
        "seats",
        "current_period_end",
        "cancel_at_period_end",
    }
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(Subscription).where(Subscription.tenant_id == tenant))
        ).all()
    assert len(rows) == 1
    assert (rows[0].plan_code, rows[0].seats, rows[0].cancel_at_period_end) == (
        "business",
        4,
        True,
    )
    assert rows[0].sync_version == 3  # start, change, cancel: each one intent to send


async def test_a_member_cannot_touch_the_subscription(
    client: AsyncClient, as_role: dict[str, dict[str, str]]
) -> None:
    member = as_role["member"]
    assert (await client.post(URL, json={"plan_code": "team"}, headers=as_role["owner"])).is_success

    attempts = [
        await client.post(URL, json={"plan_code": "team"}, headers=member),
        await client.patch(URL, json={"plan_code": "business"}, headers=member),
        await client.delete(URL, headers=member),
    ]

    for response in attempts:
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
    current = await client.get(URL, headers=member)
    assert current.json()["plan_code"] == "team"
    assert current.json()["cancel_at_period_end"] is False


async def test_another_tenants_subscription_is_never_visible(
    client: AsyncClient,
    new_member: NewMember,
    as_role: dict[str, dict[str, str]],
) -> None:
    other = (await new_member()).headers  # the owner of another tenant
    assert (await client.post(URL, json={"plan_code": "team"}, headers=as_role["owner"])).is_success

    seen = await client.get(URL, headers=other)
    changed = await client.patch(URL, json={"seats": 9}, headers=other)
    canceled = await client.delete(URL, headers=other)

    assert seen.status_code == 404
    assert seen.headers["content-type"] == PROBLEM
    assert changed.status_code == 404
    assert canceled.status_code == 404
    mine = await client.get(URL, headers=as_role["owner"])
    # No seats asked for: the seats in use, the tenant's four members.
    assert (mine.json()["seats"], mine.json()["cancel_at_period_end"]) == (4, False)


async def test_bad_commands_get_problems(
    client: AsyncClient, as_role: dict[str, dict[str, str]]
) -> None:
    owner = as_role["owner"]

    unknown = await client.post(URL, json={"plan_code": "platinum"}, headers=owner)
    no_seats = await client.post(URL, json={"plan_code": "team", "seats": 0}, headers=owner)
    nothing_yet = await client.patch(URL, json={"seats": 2}, headers=owner)
    await client.post(URL, json={"plan_code": "team"}, headers=owner)
    twice = await client.post(URL, json={"plan_code": "team"}, headers=owner)
    empty_change = await client.patch(URL, json={}, headers=owner)

    assert unknown.status_code == 422
    assert "platinum" in unknown.json()["detail"]
    assert no_seats.status_code == 422
    assert nothing_yet.status_code == 404
    assert twice.status_code == 409
    assert empty_change.status_code == 422
    for response in (unknown, no_seats, nothing_yet, twice, empty_change):
        assert response.headers["content-type"] == PROBLEM


async def test_usage_adds_up_the_tenants_runs_this_month(
    client: AsyncClient,
    sessionmaker: SessionMaker,
    as_role: dict[str, dict[str, str]],
    tenant: uuid.UUID,
) -> None:
    other = await new_tenant(sessionmaker)
    now = datetime.now(UTC)
    run = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        for owner, tokens in ((tenant, (10, 20, 8)), (tenant, (1, 2, 0)), (other, (500, 500, 9))):
            await record_usage(
                session,
                tenant_id=owner,
                run_id=uuid.uuid4(),
                input_tokens=tokens[0],
                output_tokens=tokens[1],
                cached_input_tokens=tokens[2],
                at=now,
            )
        # Recording a run twice (a redelivered task) counts it once.
        for _ in range(2):
            await record_usage(
                session, tenant_id=tenant, run_id=run, input_tokens=5, output_tokens=5, at=now
            )

    response = await client.get("/api/v1/billing/usage?period=current", headers=as_role["member"])
    bad = await client.get("/api/v1/billing/usage?period=last-year", headers=as_role["member"])

    assert response.status_code == 200
    usage = response.json()
    assert (usage["input_tokens"], usage["output_tokens"], usage["runs"]) == (16, 27, 3)
    assert usage["cached_input_tokens"] == 8
    assert usage["reported_quantity"] == 0
    assert usage["period_start"].startswith(now.strftime("%Y-%m-01T00:00:00"))
    assert bad.status_code == 422
