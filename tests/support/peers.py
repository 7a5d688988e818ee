"""Clients of one running app, each seen coming from the peer address it is asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from api.main import create_app
from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.app import use_test_transaction

ClientFrom = Callable[..., AsyncClient]


def with_api(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=changes)})


@asynccontextmanager
async def serving_from(app: FastAPI) -> AsyncIterator[ClientFrom]:
    """``client_from(peer, scheme="http")``: a client whose connection comes from ``peer``."""
    clients: list[AsyncClient] = []
    async with LifespanManager(app) as manager:

        def client_from(peer: str, scheme: str = "http") -> AsyncClient:
            transport = ASGITransport(manager.app, raise_app_exceptions=False, client=(peer, 40000))
            client = AsyncClient(transport=transport, base_url=f"{scheme}://testserver")
            clients.append(client)
            return client

        try:
            yield client_from
        finally:
            for client in clients:
                await client.aclose()


@asynccontextmanager
async def app_serving_from(
    settings: Settings, sessionmaker: SessionMaker
) -> AsyncIterator[tuple[FastAPI, ClientFrom]]:
    """An app with these settings, its requests in the test's transaction."""
    app = use_test_transaction(create_app(settings), sessionmaker)
    async with serving_from(app) as client_from:
        yield app, client_from
