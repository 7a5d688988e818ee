"""The real application, its lifespan run, requests sent through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from api.deps import get_unit_of_work
from api.main import create_app
from switchboard.kit.db import SessionMaker
from switchboard.kit.uow import UnitOfWork
from switchboard.settings import Settings


def use_test_transaction(app: FastAPI, sessionmaker: SessionMaker) -> FastAPI:
    """Requests commit into the test's savepoints, rolled back when the test ends."""

    async def unit_of_work_in_test_transaction() -> AsyncIterator[UnitOfWork]:
        async with UnitOfWork(sessionmaker, app.state.job_sender) as uow:
            yield uow

    app.dependency_overrides[get_unit_of_work] = unit_of_work_in_test_transaction
    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = ASGITransport(manager.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@asynccontextmanager
async def in_test_transaction(
    app: FastAPI, sessionmaker: SessionMaker
) -> AsyncIterator[AsyncClient]:
    """A client of another app (other settings) sharing the test's transaction."""
    async with serving(use_test_transaction(app, sessionmaker)) as client:
        yield client


@pytest.fixture
def app(settings: Settings, sessionmaker: SessionMaker) -> FastAPI:
    return use_test_transaction(create_app(settings), sessionmaker)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with serving(app) as client:
        yield client


@pytest.fixture
async def live_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app as deployed: every request commits, its jobs reach the broker after commit."""
    async with serving(create_app(settings)) as client:
        yield client
