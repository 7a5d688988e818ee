from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker, create_engine, create_sessionmaker
from switchboard.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def load_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"switchboard: {exc}", err=True)
        raise typer.Exit(2) from None


async def transaction(
    settings: Settings, work: Callable[[AsyncSession, Settings], Awaitable[T]]
) -> T:
    """Runs ``work`` in one committed transaction on a short-lived engine."""
    engine = create_engine(settings.database, application_name="switchboard-cli")
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session, settings)
    finally:
        await engine.dispose()


async def with_sessionmaker(settings: Settings, work: Callable[[SessionMaker], Awaitable[T]]) -> T:
    """Runs ``work`` with sessions on a short-lived engine; ``work`` commits what it must."""
    engine = create_engine(settings.database, application_name="switchboard-cli")
    try:
        return await work(create_sessionmaker(engine))
    finally:
        await engine.dispose()
