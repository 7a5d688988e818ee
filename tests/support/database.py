"""A database per test run, migrated once; each test inside a transaction rolled back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from switchboard.kit.db import SessionMaker, create_engine, database_url
from switchboard.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def admin_conninfo(url: str) -> str:
    parsed = database_url(url)
    return psycopg.conninfo.make_conninfo(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password or None,
        dbname="postgres",
    )


def create_database(url: str) -> None:
    name = database_url(url).database
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    name = database_url(url).database
    with psycopg.connect(admin_conninfo(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    # The option is interpolated: a percent-encoded password's % must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def migrated_database(settings: Settings) -> Iterator[str]:
    url = str(settings.database.url)
    create_database(url)
    command.upgrade(alembic_config(url), "head")
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
async def engine(settings: Settings, migrated_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database, application_name="switchboard-tests")
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


@pytest.fixture
def sessionmaker(db_connection: AsyncConnection) -> SessionMaker:
    """Sessions whose commits are savepoints inside the test's outer transaction."""
    return async_sessionmaker(
        bind=db_connection,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def db_session(sessionmaker: SessionMaker) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def committed(engine: AsyncEngine) -> SessionMaker:
    """Sessions that really commit, for what another process (a worker) must see."""
    return async_sessionmaker(engine, expire_on_commit=False)
