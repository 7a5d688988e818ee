"""`switchboard billing`: plan prices, and usage reports by hand (dry run first)."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.kit.db import SessionMaker
from switchboard.models import Plan
from switchboard.settings import Settings
from tests.billing.test_reporting import billed, records, tenant_with_usage
from tests.support.stripe_server import StripeServer

runner = CliRunner()


async def test_sync_plans_writes_the_prices_and_names_what_is_missing(
    committed: SessionMaker,
) -> None:
    prices = {"team": {"seat": "price_team_v2", "usage": "price_tokens"}, "gold": {"seat": "p"}}

    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["billing", "sync-plans"],
        env={"BILLING_PLAN_PRICES": json.dumps(prices)},
    )
    async with committed() as session:
        team = await session.get(Plan, "team")

    assert result.exit_code == 0, result.output
    assert "updated: team" in result.stdout
    assert "no such plan (ignored): gold" in result.stderr
    assert team is not None
    assert team.stripe_seat_price_id == "price_team_v2"


@pytest.mark.usefixtures("priced_plans")
async def test_plans_are_priced_again_from_the_settings(
    committed: SessionMaker, settings: Settings
) -> None:
    result = await asyncio.to_thread(runner.invoke, app, ["billing", "sync-plans"])

    async with committed() as session:
        plans = {p.code: p.stripe_seat_price_id for p in await session.scalars(select(Plan))}
    assert result.exit_code == 0, result.output
    # Free is nobody's subscription, so it has no price and is not reported as missing one.
    assert "without a Stripe seat price" not in result.stderr
    assert plans == {
        "free": None,
        **{code: p.seat for code, p in settings.billing.plan_prices.items()},
    }


async def test_report_usage_dry_run_changes_nothing_then_reports(
    committed: SessionMaker, stripe_api: StripeServer, settings: Settings
) -> None:
    tenant = await tenant_with_usage(committed, [(100, 23)])

    dry = await asyncio.to_thread(runner.invoke, app, ["billing", "report-usage", "--dry-run"])

    assert dry.exit_code == 0, dry.output
    assert f"{tenant.id}  {tenant.customer}  1 runs  123 tokens" in dry.stdout
    assert "unreported" in dry.stdout
    assert {r.report_state for r in await records(committed, tenant)} == {"pending"}
    assert billed(stripe_api, settings, tenant) == 0

    real = await asyncio.to_thread(runner.invoke, app, ["billing", "report-usage"])

    assert real.exit_code == 0, real.output
    assert "reported" in real.stdout
    assert billed(stripe_api, settings, tenant) == 123
    assert {r.report_state for r in await records(committed, tenant)} == {"reported"}


async def test_report_usage_exits_1_when_stripe_fails(
    committed: SessionMaker, stripe_api: StripeServer
) -> None:
    tenant = await tenant_with_usage(committed, [(1, 1)])
    stripe_api.fail_next(100, 500, path_prefix="/v1/billing/meter_events")

    result = await asyncio.to_thread(runner.invoke, app, ["billing", "report-usage"])

    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert {r.report_state for r in await records(committed, tenant)} == {"sending"}
    stripe_api.reset()  # Stripe is back: the next report sends the batch
    again = await asyncio.to_thread(runner.invoke, app, ["billing", "report-usage"])
    assert again.exit_code == 0, again.output
    assert {r.report_state for r in await records(committed, tenant)} == {"reported"}
