"""``switchboard ops``: failed tasks and beat's heartbeat, for operators."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.cli.common import load_or_exit, transaction
from switchboard.kit.redis import create_redis
from switchboard.ops.schemas import TaskFailureRead
from switchboard.ops.service import heartbeat_is_stale, last_heartbeat, recent_task_failures
from switchboard.settings import Settings

app = typer.Typer(help="Failed tasks and the beat heartbeat.", no_args_is_help=True)

MESSAGE_CHARS = 200


@app.command("failures")
def failures(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    task: Annotated[
        str | None, typer.Option(help="Only this task, by name (billing.usage.report).")
    ] = None,
) -> None:
    """Failed tasks recorded by the workers, newest first, one line each."""
    settings = load_or_exit()

    async def work(session: AsyncSession, _: Settings) -> list[TaskFailureRead]:
        return await recent_task_failures(session, limit=limit, task_name=task)

    rows = asyncio.run(transaction(settings, work))
    for row in rows:
        message = (row.message.splitlines() or [""])[0][:MESSAGE_CHARS]
        typer.echo(
            f"{row.failed_at.isoformat(timespec='seconds')}  {row.task_name}  {row.task_id}"
            f"  retries={row.retries}  request_id={row.request_id or '-'}"
            f"  {row.exception_type}: {message}"
        )
    typer.echo(f"{len(rows)} failed tasks shown", err=True)


@app.command("heartbeat")
def heartbeat() -> None:
    """When beat's heartbeat last ran; exit 1 if never, or not for two heartbeat periods."""
    settings = load_or_exit()

    async def read() -> datetime | None:
        redis = create_redis(str(settings.redis.url), settings.redis)
        try:
            return await last_heartbeat(redis)
        finally:
            await redis.aclose()

    at = asyncio.run(read())
    now = datetime.now(UTC)
    period = settings.beat.heartbeat_seconds
    if at is None:
        typer.echo("no heartbeat recorded: beat has not run, or Redis lost it", err=True)
        raise typer.Exit(1)
    age = (now - at).total_seconds()
    typer.echo(f"last heartbeat {at.isoformat(timespec='seconds')} ({age:.0f} s ago)")
    if heartbeat_is_stale(at, period_seconds=period, now=now):
        typer.echo(f"stale: beat runs it every {period:g} s; is beat running?", err=True)
        raise typer.Exit(1)
