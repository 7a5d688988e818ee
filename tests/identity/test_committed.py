"""Flows that need real commits between requests: concurrency, rate limits, service tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from switchboard.identity.service import (
    create_service_account,
    purge_login_events,
    purge_refresh_tokens,
)
from switchboard.kit.db import create_sessionmaker
from switchboard.models import RefreshToken, UserLoginEvent
from switchboard.settings import Settings
from tests.identity.test_routes import PASSWORD, login, new_email, register

pytestmark = pytest.mark.usefixtures("committed_keys")


async def _client(settings: Settings, ip: str = "127.0.0.1") -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = ASGITransport(manager.app, client=(ip, 50000))
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def committed_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app on its own connection pool: each request commits for real."""
    async for client in _client(settings):
        yield client


async def test_parallel_refreshes_of_one_token_yield_one_pair(
    committed_client: AsyncClient, engine: AsyncEngine
) -> None:
    email = new_email()
    await register(committed_client, email)
    pair = await login(committed_client, email)

    responses = await asyncio.gather(
        *(
            committed_client.post(
                "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
            )
            for _ in range(6)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401, 401, 401], [r.text for r in responses]
    selector = pair["refresh_token"][3:].split(".")[0]
    async with create_sessionmaker(engine)() as session:
        parent = await session.scalar(
            select(RefreshToken.id).where(RefreshToken.selector == selector)
        )
        children = await session.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.parent_id == parent)
        )
    assert children == 1


async def test_login_is_rate_limited_per_address(settings: Settings) -> None:
    identity = settings.identity.model_copy(update={"login_ip_max_attempts": 3})
    address = f"198.51.100.{uuid.uuid4().int % 250}"  # a documentation address, never dialled
    async for client in _client(settings.model_copy(update={"identity": identity}), address):
        statuses = [
            (
                await client.post(
                    "/api/v1/auth/login", json={"email": new_email(), "password": "x" * 12}
                )
            ).status_code
            for _ in range(4)
        ]
        limited = await client.post(
            "/api/v1/auth/login", json={"email": new_email(), "password": "x" * 12}
        )
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429
    assert limited.json()["code"] == "identity.login_rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


@pytest.fixture
async def service_credential(
    committed_client: AsyncClient, engine: AsyncEngine, settings: Settings
) -> tuple[str, str, str]:
    registered = await register(committed_client, new_email())
    tenant_id = uuid.UUID(registered["tenant"]["id"])
    async with create_sessionmaker(engine)() as session, session.begin():
        credential = await create_service_account(
            session, settings, tenant_id=tenant_id, name="ci", scopes=["runs:write", "runs:read"]
        )
    return credential.client_id, credential.client_secret, str(tenant_id)


async def test_service_account_gets_a_scoped_token_once_per_nonce(
    committed_client: AsyncClient, service_credential: tuple[str, str, str]
) -> None:
    client_id, secret, tenant_id = service_credential
    body = {"client_id": client_id, "client_secret": secret, "nonce": uuid.uuid4().hex}

    issued = await committed_client.post("/api/v1/auth/service-token", json=body)
    replayed = await committed_client.post("/api/v1/auth/service-token", json=body)
    wrong = await committed_client.post(
        "/api/v1/auth/service-token",
        json={**body, "client_secret": secret[:-1] + "x", "nonce": uuid.uuid4().hex},
    )

    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert token["scope"] == "runs:write runs:read"
    assert replayed.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "identity.invalid_client"
    # A service token is no user access token.
    me = await committed_client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.status_code == 401
    del tenant_id


async def test_service_account_requests_are_rate_limited(
    settings: Settings, service_credential: tuple[str, str, str]
) -> None:
    client_id, secret, _ = service_credential
    identity = settings.identity.model_copy(update={"service_rate_limit_per_minute": 2})
    async for client in _client(settings.model_copy(update={"identity": identity})):
        statuses = [
            (
                await client.post(
                    "/api/v1/auth/service-token",
                    json={
                        "client_id": client_id,
                        "client_secret": secret,
                        "nonce": uuid.uuid4().hex,
                    },
                )
            ).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_retention_hooks_delete_only_what_is_past_its_window(
    committed_client: AsyncClient, engine: AsyncEngine
) -> None:
    email = new_email()
    await register(committed_client, email)
    await login(committed_client, email)
    await committed_client.post("/api/v1/auth/login", json={"email": email, "password": "x" * 12})
    sessionmaker = create_sessionmaker(engine)
    now = datetime.now(UTC)

    async with sessionmaker() as session, session.begin():
        kept_events = await purge_login_events(
            session, older_than=now - timedelta(days=1), limit=100
        )
        kept_tokens = await purge_refresh_tokens(session, now=now, limit=100)
    async with sessionmaker() as session:
        events = await session.scalar(select(func.count()).select_from(UserLoginEvent))
    async with sessionmaker() as session, session.begin():
        purged = 0
        while batch := await purge_login_events(
            session, older_than=now + timedelta(seconds=1), limit=1
        ):
            purged += batch
        future = now + timedelta(days=365)
        tokens = await purge_refresh_tokens(session, now=future, limit=1000)
    async with sessionmaker() as session:
        left = await session.scalar(select(func.count()).select_from(RefreshToken))

    assert kept_events == 0
    assert kept_tokens == 0
    assert events
    assert purged >= 2
    assert tokens >= 1
    assert left == 0


async def test_demo_mode_signs_in_with_the_fixed_login(settings: Settings) -> None:
    from switchboard.auth.settings import IdpMode
    from switchboard.identity.service import DEMO_EMAIL, DEMO_LOGIN_PASSWORD

    demo = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"idp_mode": IdpMode.demo})}
    )
    async for client in _client(demo):
        pair = await login(client, DEMO_EMAIL, DEMO_LOGIN_PASSWORD)
        me = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
        )
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": DEMO_EMAIL, "password": PASSWORD}
        )
    assert me.json()["user"]["email"] == DEMO_EMAIL
    assert me.json()["roles"] == ["owner"]
    assert wrong.status_code == 401


async def test_revoked_credential_is_refused(
    committed_client: AsyncClient, service_credential: tuple[str, str, str], engine: AsyncEngine
) -> None:
    from sqlalchemy import update

    from switchboard.models import ServiceAccountCredential

    client_id, secret, _ = service_credential
    async with create_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            update(ServiceAccountCredential)
            .where(ServiceAccountCredential.client_id == client_id)
            .values(revoked_at=func.now())
        )
    response = await committed_client.post(
        "/api/v1/auth/service-token",
        json={"client_id": client_id, "client_secret": secret, "nonce": uuid.uuid4().hex},
    )
    assert response.status_code == 401


def test_seed_and_service_account_commands(settings: Settings) -> None:
    from typer.testing import CliRunner

    from switchboard.cli import app

    runner = CliRunner()
    refused = runner.invoke(app, ["identity", "seed"])
    seeded = runner.invoke(app, ["identity", "seed"], env={"ENVIRONMENT": "development"})
    again = runner.invoke(app, ["identity", "seed"], env={"ENVIRONMENT": "development"})

    assert refused.exit_code == 2
    assert seeded.exit_code == 0, seeded.output
    assert "(4 users created)" in seeded.stdout
    assert "(0 users created)" in again.stdout
    del settings
