"""Each plan's limits, shown and changed by operators: the service and `switchboard billing
limits`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from switchboard.billing.errors import InvalidLimitError, PlanNotFoundError
from switchboard.billing.limits import plans_with_limits, set_plan_limits
from switchboard.billing.schemas import PlanLimits
from switchboard.billing.service import BillingService
from switchboard.cli import app
from switchboard.kit.db import SessionMaker
from switchboard.models import Plan, Subscription
from tests.billing.conftest import new_tenant

runner = CliRunner()

LIMIT_COLUMNS = (
    "max_seats",
    "runs_per_minute",
    "concurrent_runs",
    "monthly_tokens",
    "open_streams_per_user",
)


async def scratch_plan(sessionmaker: SessionMaker, *, monthly_tokens: int | None) -> str:
    """A plan of its own (inactive, so no catalogue shows it) whose token limit is set the way
    an operator sets it, through the limits service."""
    code = f"t-{uuid.uuid4().hex[:10]}"
    async with sessionmaker() as session, session.begin():
        session.add(
            Plan(code=code, name="Scratch", seat_price_cents=0, included_tokens=0, active=False)
        )
        await session.flush()
        await set_plan_limits(session, code, {"monthly_tokens": monthly_tokens})
    return code


async def subscribe(
    sessionmaker: SessionMaker, tenant_id: uuid.UUID, plan_code: str, *, status: str = "active"
) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(Subscription(tenant_id=tenant_id, plan_code=plan_code, seats=1, status=status))


async def drop_plan(sessionmaker: SessionMaker, code: str) -> None:
    """Removes a scratch plan and the subscriptions to it from a committed database."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(Subscription).where(Subscription.plan_code == code))
        await session.execute(delete(Plan).where(Plan.code == code))


async def limits_of(sessionmaker: SessionMaker, code: str) -> dict[str, int | None]:
    async with sessionmaker() as session:
        plan = await session.get_one(Plan, code, populate_existing=True)
        return {name: getattr(plan, name) for name in LIMIT_COLUMNS}


@pytest.fixture
async def plan(committed: SessionMaker) -> AsyncIterator[str]:
    """A committed plan of its own for the CLI, which commits in its own process's engine."""
    code = await scratch_plan(committed, monthly_tokens=None)
    async with committed() as session, session.begin():
        await set_plan_limits(
            session,
            code,
            {
                "max_seats": 3,
                "runs_per_minute": 10,
                "concurrent_runs": 2,
                "monthly_tokens": 1_000,
                "open_streams_per_user": 5,
            },
        )
    yield code
    await drop_plan(committed, code)


async def test_the_catalogue_lists_every_plan_with_its_limits(db_session: AsyncSession) -> None:
    plans = {plan.code: plan for plan in await plans_with_limits(db_session)}

    assert {"free", "starter", "team", "business"} <= set(plans)
    assert plans["free"].limits == PlanLimits(
        seats=3,
        runs_per_minute=10,
        concurrent_runs=2,
        monthly_tokens=200_000,
        open_streams_per_user=5,
    )
    assert plans["business"].limits.seats is None
    assert plans["team"].limits.monthly_tokens is None


async def test_setting_limits_changes_only_those_named(sessionmaker: SessionMaker) -> None:
    code = await scratch_plan(sessionmaker, monthly_tokens=500)
    async with sessionmaker() as session, session.begin():
        await set_plan_limits(session, code, {"runs_per_minute": 7, "concurrent_runs": 0})

    assert await limits_of(sessionmaker, code) == {
        "max_seats": None,
        "runs_per_minute": 7,
        "concurrent_runs": 0,
        "monthly_tokens": 500,
        "open_streams_per_user": None,
    }

    async with sessionmaker() as session, session.begin():
        changed = await set_plan_limits(session, code, {"monthly_tokens": None})

    assert changed.limits.monthly_tokens is None
    assert changed.limits.runs_per_minute == 7
    assert (await limits_of(sessionmaker, code))["monthly_tokens"] is None


async def test_a_tenant_on_the_plan_sees_the_new_limits(sessionmaker: SessionMaker) -> None:
    code = await scratch_plan(sessionmaker, monthly_tokens=500)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, code)
    async with sessionmaker() as session, session.begin():
        await set_plan_limits(session, code, {"monthly_tokens": 42, "runs_per_minute": 3})

    async with sessionmaker() as session:
        on = await BillingService(session).tenant_plan(tenant)
    assert (on.plan_code, on.limits.monthly_tokens, on.limits.runs_per_minute) == (code, 42, 3)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"runs_per_minute": -1}, "between 0 and"),
        ({"max_seats": 2**31}, "between 0 and"),
        ({"monthly_tokens": 2**63}, "between 0 and"),
        ({"tokens": 5}, "no limit 'tokens'"),
        ({}, "at least one"),
    ],
)
async def test_invalid_limits_are_refused_and_change_nothing(
    sessionmaker: SessionMaker, changes: dict[str, int | None], complaint: str
) -> None:
    code = await scratch_plan(sessionmaker, monthly_tokens=500)

    async with sessionmaker() as session:
        with pytest.raises(InvalidLimitError, match=complaint):
            await set_plan_limits(session, code, changes)

    assert (await limits_of(sessionmaker, code))["monthly_tokens"] == 500


async def test_an_unknown_plan_is_refused(sessionmaker: SessionMaker) -> None:
    async with sessionmaker() as session:
        with pytest.raises(PlanNotFoundError, match="'gold'"):
            await set_plan_limits(session, "gold", {"runs_per_minute": 1})


async def cli(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(runner.invoke, app, ["billing", "limits", *args])
    return result.exit_code, result.stdout, result.stderr


async def test_show_prints_every_plan_with_its_limits(plan: str) -> None:
    code, out, _ = await cli("show")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == [
        "plan",
        "active",
        "seats",
        "runs/min",
        "concurrent",
        "monthly",
        "tokens",
        "streams/user",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["free"] == ["yes", "3", "10", "2", "200000", "5"]
    assert rows["business"] == ["yes", "unlimited", "1000", "200", "unlimited", "50"]
    assert rows[plan] == ["no", "3", "10", "2", "1000", "5"]


async def test_set_changes_the_plan_and_prints_it(committed: SessionMaker, plan: str) -> None:
    code, out, err = await cli(
        "set",
        plan,
        "--runs-per-minute",
        "120",
        "--concurrent-runs",
        "0",
        "--monthly-tokens",
        "none",
        "--unlimited",
        "open-streams-per-user",
        "--max-seats",
        "25",
    )

    assert code == 0, out + err
    assert out.splitlines()[-1].split() == [plan, "no", "25", "120", "0", "unlimited", "unlimited"]
    assert await limits_of(committed, plan) == {
        "max_seats": 25,
        "runs_per_minute": 120,
        "concurrent_runs": 0,
        "monthly_tokens": None,
        "open_streams_per_user": None,
    }


@pytest.mark.parametrize(
    ("args", "exit_code", "complaint"),
    [
        (["--runs-per-minute", "-5"], 1, "runs_per_minute must be between 0 and"),
        (["--monthly-tokens", "lots"], 2, "neither a whole number nor 'none'"),
        (["--unlimited", "tokens"], 2, "no limit 'tokens'"),
        (["--max-seats", "4", "--unlimited", "max-seats"], 2, "given a value too"),
        ([], 2, "at least one limit"),
    ],
)
async def test_set_refuses_bad_values_and_changes_nothing(
    committed: SessionMaker, plan: str, args: list[str], exit_code: int, complaint: str
) -> None:
    before = await limits_of(committed, plan)

    code, out, err = await cli("set", plan, *args)

    assert code == exit_code, out + err
    assert complaint in " ".join(err.replace("│", " ").split())
    assert await limits_of(committed, plan) == before


async def test_set_on_an_unknown_plan_exits_1(committed: SessionMaker) -> None:
    code, out, err = await cli("set", "gold", "--runs-per-minute", "5")

    assert code == 1, out
    assert "There is no plan 'gold'." in err
