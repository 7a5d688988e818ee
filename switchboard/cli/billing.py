"""``switchboard billing``: plan prices and usage reports."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.gateway import StripeGateway
from switchboard.billing.plans import PlanSync, sync_plan_prices
from switchboard.billing.reporting import ReportSummary, report_usage, unreported
from switchboard.cli.common import load_or_exit, transaction, with_sessionmaker
from switchboard.settings import Settings

app = typer.Typer(help="Plans and metered usage.", no_args_is_help=True)


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
