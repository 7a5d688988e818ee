"""``switchboard retention``: the scheduled clean-up, by hand."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from switchboard.cli.common import load_or_exit, with_sessionmaker
from switchboard.kit.db import SessionMaker
from switchboard.kit.redis import create_redis
from switchboard.retention.service import RetentionReport, run_retention

app = typer.Typer(help="Data past its retention window.", no_args_is_help=True)


@app.command("run")
def run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete what outlived its window now (what beat's retention.run does daily)."""
    settings = load_or_exit()

    async def work(sessionmaker: SessionMaker) -> RetentionReport:
        redis = create_redis(str(settings.redis.url), settings.redis)
        try:
            return await run_retention(
                sessionmaker,
                redis,
                settings.retention,
                buffer_ttl_seconds=settings.runs.buffer_ttl_seconds,
                dry_run=dry_run,
            )
        finally:
            await redis.aclose()

    report = asyncio.run(with_sessionmaker(settings, work))
    verb = "would delete" if dry_run else "deleted"
    for target, count in report.counts.items():
        typer.echo(f"{target:<24} {verb} {count}")
    typer.echo(f"{report.total} in all{' (dry run: nothing deleted)' if dry_run else ''}")
