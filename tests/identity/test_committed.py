"""Flows that need real commits between requests: concurrency, rate limits, service tokens,
and what a failed sign-in or refresh commits on its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.deps import Identity, UoW
from api.main import create_app
from switchboard.identity.secrets import event_hash
from switchboard.identity.service import Client
from switchboard.identity.service_accounts import create_service_account
from switchboard.kit.db import create_sessionmaker
from switchboard.models import RefreshToken, Tenant, UserLoginEvent
from switchboard.settings import Settings
from tests.identity.test_routes import PASSWORD, login, new_email, register

pytestmark = pytest.mark.usefixtures("committed_keys")


async def _client(
    settings: Settings, ip: str = "127.0.0.1", app: FastAPI | None = None
) -> AsyncIterator[AsyncClient]:
    app = app or create_app(settings)
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


async def test_demo_mode_signs_in_with_the_fixed_login(settings: Settings) -> None:
    from switchboard.auth.settings import IdpMode
    from switchboard.identity.sessions import DEMO_EMAIL, DEMO_LOGIN_PASSWORD

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


class ProbeRequest(BaseModel):
    marker: str
    email: str = ""
    password: str = ""
    refresh_token: str | None = None


def with_probe(app: FastAPI) -> FastAPI:
    """Adds a route that writes a tenant named ``marker`` in the request's unit of work, then
    signs in or refreshes: a request with other work done when identity refuses it."""

    @app.post("/probe/write-then-identity", status_code=204)
    async def write_then_identity(body: ProbeRequest, uow: UoW, identity: Identity) -> None:
        uow.session.add(Tenant(name=body.marker))
        await uow.session.flush()
        client = Client(ip="203.0.113.7", user_agent="probe")
        if body.refresh_token is not None:
            await identity.refresh(body.refresh_token, client)
        else:
            await identity.login(body.email, body.password, client)

    return app


async def _login_results(engine: AsyncEngine, settings: Settings, email: str) -> list[str]:
    async with create_sessionmaker(engine)() as session:
        query = select(UserLoginEvent.result).where(
            UserLoginEvent.email_hash == event_hash(settings.identity, email.lower())
        )
        return sorted(await session.scalars(query))


async def _tenants_named(engine: AsyncEngine, *names: str) -> set[str]:
    async with create_sessionmaker(engine)() as session:
        return set(await session.scalars(select(Tenant.name).where(Tenant.name.in_(names))))


async def test_a_refused_login_commits_its_event_alone_and_a_successful_one_with_the_request(
    settings: Settings, engine: AsyncEngine
) -> None:
    email = new_email()
    refused_marker, accepted_marker = uuid.uuid4().hex, uuid.uuid4().hex
    async for client in _client(settings, app=with_probe(create_app(settings))):
        await register(client, email)
        refused = await client.post(
            "/probe/write-then-identity",
            json={"marker": refused_marker, "email": email, "password": "wrong" * 4},
        )
        accepted = await client.post(
            "/probe/write-then-identity",
            json={"marker": accepted_marker, "email": email, "password": PASSWORD},
        )

    assert refused.status_code == 401
    assert refused.json()["code"] == "identity.invalid_credentials"
    assert accepted.status_code == 204
    assert await _login_results(engine, settings, email) == ["failure", "success"]
    assert await _tenants_named(engine, refused_marker, accepted_marker) == {accepted_marker}


async def test_failed_and_locked_out_logins_are_committed_though_the_requests_fail(
    committed_client: AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    email = new_email()
    await register(committed_client, email)
    threshold = settings.identity.lockout_threshold
    failed = [
        await committed_client.post(
            "/api/v1/auth/login", json={"email": email, "password": "x" * 12}
        )
        for _ in range(threshold)
    ]
    locked = await committed_client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )

    assert [response.status_code for response in failed] == [401] * threshold
    assert locked.status_code == 423
    assert await _login_results(engine, settings, email) == sorted(
        ["failure"] * threshold + ["locked"]
    )


async def test_a_reused_refresh_token_revokes_its_family_alone_though_the_request_fails(
    settings: Settings, engine: AsyncEngine
) -> None:
    email = new_email()
    marker = uuid.uuid4().hex
    async for client in _client(settings, app=with_probe(create_app(settings))):
        await register(client, email)
        first = await login(client, email)
        second = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        reused = await client.post(
            "/probe/write-then-identity",
            json={"marker": marker, "refresh_token": first["refresh_token"]},
        )

    assert second.status_code == 200
    assert reused.status_code == 401
    assert reused.json()["code"] == "auth.invalid_token"
    selector = first["refresh_token"][3:].split(".")[0]
    async with create_sessionmaker(engine)() as session:
        family = await session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.selector == selector)
        )
        reasons = list(
            await session.scalars(
                select(RefreshToken.revoked_reason).where(RefreshToken.family_id == family)
            )
        )
    assert reasons == ["reuse", "reuse"]
    assert await _tenants_named(engine, marker) == set()


async def test_a_refused_login_holds_one_connection_at_a_time(
    settings: Settings, engine: AsyncEngine
) -> None:
    # The request's transaction ends before the event's begins: with a single pooled
    # connection, holding the first while waiting for a second would time out.
    database = settings.database.model_copy(
        update={"pool_size": 1, "max_overflow": 0, "pool_timeout_seconds": 2.0}
    )
    email = new_email()
    async for client in _client(settings.model_copy(update={"database": database})):
        await register(client, email)
        refused = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": "x" * 12}
        )

    assert refused.status_code == 401
    assert await _login_results(engine, settings, email) == ["failure"]
