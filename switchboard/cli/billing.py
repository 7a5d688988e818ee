"""``switchboard billing``: plan prices and limits, usage reports."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.errors import InvalidLimitError, PlanNotFoundError
from switchboard.billing.gateway import StripeGateway
from switchboard.billing.limits import (
    LIMITS,
    PlanLimitsView,
    plans_with_limits,
    set_plan_limits,
)
from switchboard.billing.plans import PlanSync, sync_plan_prices
from switchboard.billing.reporting import ReportSummary, report_usage, unreported
from switchboard.cli.common import load_or_exit, transaction, with_sessionmaker
from switchboard.settings import Settings

app = typer.Typer(help="Plans and metered usage.", no_args_is_help=True)
limits_app = typer.Typer(help="Each plan's limits (none is unlimited).", no_args_is_help=True)
app.add_typer(limits_app, name="limits")

_UNLIMITED = ("none", "unlimited")
_FLAGS = ", ".join(name.replace("_", "-") for name in LIMITS)
_HEADER = ("plan", "active", "seats", "runs/min", "concurrent", "monthly tokens", "streams/user")


@app.command("sync-plans")
def sync_plans() -> None:
    """Write the Stripe prices of BILLING_PLAN_PRICES onto the plans."""
    settings = load_or_exit()

    async def work(session: AsyncSession, current: Settings) -> PlanSync:
        return await sync_plan_prices(session, current.billing)

    result = asyncio.run(transaction(settings, work))
    typer.echo(f"updated: {', '.join(result.updated) or 'none'}")
    if result.unknown:
        typer.echo(f"no such plan (ignored): {', '.join(result.unknown)}", err=True)
    if result.unpriced:
        typer.echo(f"plans without a Stripe seat price: {', '.join(result.unpriced)}", err=True)


@app.command("report-usage")
def report(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be reported; change nothing.")
    ] = False,
) -> None:
    """Report unreported usage to Stripe now (what beat's billing.usage.report does)."""
    settings = load_or_exit()
    if dry_run:
        batches = asyncio.run(with_sessionmaker(settings, unreported))
        for batch in batches:
            customer = batch.customer_id or "(no Stripe customer: would be skipped)"
            typer.echo(
                f"{batch.tenant_id}  {customer}  {batch.records} runs  {batch.tokens} tokens"
            )
        typer.echo(f"{sum(b.tokens for b in batches)} tokens in {len(batches)} batches unreported")
        return
    summary: ReportSummary = asyncio.run(
        with_sessionmaker(
            settings,
            lambda sessionmaker: report_usage(
                sessionmaker,
                StripeGateway(settings.stripe),
                batch_size=settings.billing.report_batch,
            ),
        )
    )
    typer.echo(
        f"reported {summary.tokens} tokens in {len(summary.reported)} batches;"
        f" {len(summary.failed)} failed; {summary.skipped_records} records skipped"
    )
    if summary.failed:
        raise typer.Exit(1)


def _limit(value: str | None) -> str | None:
    """Typer's parser for a limit option: a whole number, or ``none`` for unlimited."""
    if value is None or value.lower() in _UNLIMITED:
        return value
    try:
        int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a whole number nor 'none'") from None
    return value


def _option(help_text: str) -> Any:
    return typer.Option(metavar="N|none", help=help_text, callback=_limit)


@limits_app.command("show")
def limits_show() -> None:
    """Print every plan with its limits."""
    settings = load_or_exit()

    async def work(session: AsyncSession, _: Settings) -> list[PlanLimitsView]:
        return await plans_with_limits(session)

    _print(asyncio.run(transaction(settings, work)))


@limits_app.command("set")
def limits_set(
    plan: Annotated[
        str, typer.Argument(metavar="PLAN", help="The plan's code, as `limits show` prints it.")
    ],
    max_seats: Annotated[str | None, _option("Seats a tenant may fill.")] = None,
    runs_per_minute: Annotated[str | None, _option("Chats a tenant may start a minute.")] = None,
    concurrent_runs: Annotated[
        str | None, _option("Runs of a tenant queued or running at once.")
    ] = None,
    monthly_tokens: Annotated[
        str | None, _option("Tokens a tenant may use in a calendar month (UTC).")
    ] = None,
    open_streams_per_user: Annotated[
        str | None, _option("Event streams one user may hold open at once.")
    ] = None,
    unlimited: Annotated[
        list[str] | None,
        typer.Option(
            "--unlimited",
            metavar="LIMIT",
            help=f"Make a limit unlimited (repeatable): {_FLAGS}.",
        ),
    ] = None,
) -> None:
    """Change a plan's limits; those not named stay as they are. Applies to every tenant on
    the plan."""
    given = {
        "max_seats": max_seats,
        "runs_per_minute": runs_per_minute,
        "concurrent_runs": concurrent_runs,
        "monthly_tokens": monthly_tokens,
        "open_streams_per_user": open_streams_per_user,
    }
    changes: dict[str, int | None] = {
        name: None if value.lower() in _UNLIMITED else int(value)
        for name, value in given.items()
        if value is not None
    }
    for raw in unlimited or ():
        name = raw.replace("-", "_")
        if name not in LIMITS:
            raise typer.BadParameter(
                f"no limit {raw!r}; one of {_FLAGS}",
                param_hint="--unlimited",
            )
        if changes.get(name) is not None:
            raise typer.BadParameter(f"{raw} is given a value too", param_hint="--unlimited")
        changes[name] = None
    if not changes:
        raise typer.BadParameter("give at least one limit to change", param_hint="PLAN")
    settings = load_or_exit()

    async def work(session: AsyncSession, _: Settings) -> PlanLimitsView:
        return await set_plan_limits(session, plan, changes)

    try:
        changed = asyncio.run(transaction(settings, work))
    except (PlanNotFoundError, InvalidLimitError) as exc:
        typer.echo(f"switchboard: {exc.message}", err=True)
        raise typer.Exit(1) from None
    _print([changed])


def _print(plans: list[PlanLimitsView]) -> None:
    rows = [_HEADER, *(_cells(plan) for plan in plans)]
    widths = [max(len(row[column]) for row in rows) + 2 for column in range(len(_HEADER))]
    for row in rows:
        typer.echo(
            "".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _cells(plan: PlanLimitsView) -> tuple[str, ...]:
    limits = plan.limits
    return (
        plan.code,
        "yes" if plan.active else "no",
        *(
            "unlimited" if value is None else str(value)
            for value in (
                limits.seats,
                limits.runs_per_minute,
                limits.concurrent_runs,
                limits.monthly_tokens,
                limits.open_streams_per_user,
            )
        ),
    )
