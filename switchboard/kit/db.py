"""Async SQLAlchemy engine and session factory on psycopg 3."""

from __future__ import annotations

import sqlalchemy.ext.asyncio
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchboard.settings import DatabaseSettings

SessionMaker = async_sessionmaker[AsyncSession]

# Postgres is down, unreachable, or every pooled connection stayed busy past the pool timeout:
# worth another try later, unlike an error in the statement itself.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
)


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the constraint or unique index the statement broke, as Postgres reports it."""
    diagnostics = getattr(error.orig, "diag", None)
    return getattr(diagnostics, "constraint_name", None)


def database_url(raw: str) -> URL:
    """Normalise any PostgreSQL URL to the psycopg 3 driver."""
    url = make_url(raw)
    return url.set(drivername="postgresql+psycopg")


def create_engine(
    settings: DatabaseSettings, *, application_name: str = "switchboard"
) -> AsyncEngine:
    # Looked up at each call, not imported: with tracing on, the SQLAlchemy instrumentation
    # wraps the module's function, and so traces every engine made after start-up.
    return sqlalchemy.ext.asyncio.create_async_engine(
        database_url(str(settings.url)),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        pool_pre_ping=True,
        echo=settings.echo,
        # Bound values are client data (messages, emails, tokens): keep them out of every
        # exception text and log line the engine writes.
        hide_parameters=True,
        connect_args={
            "connect_timeout": settings.connect_timeout_seconds,
            "application_name": application_name,
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # expire_on_commit=False: objects stay readable after the unit of work commits,
    # which is when responses are rendered and jobs are sent.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
