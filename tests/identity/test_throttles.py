"""Per-IP and global limits on sign-up, password reset, refresh and accepting an invitation:
exactly N pass, then 429 with Retry-After, and a refused request stores nothing and sends
nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.main import create_app
from switchboard.identity.errors import RefreshRateLimitedError, RegisterRateLimitedError
from switchboard.identity.limits import PublicAction, PublicLimits
from switchboard.identity.settings import IdentitySettings
from switchboard.kit.db import SessionMaker
from switchboard.models import PasswordResetToken, User
from switchboard.settings import Settings
from tests.identity.support import RecordingNotifier as InvitationRecorder
from tests.identity.support import owner
from tests.support.app import use_test_transaction

pytestmark = pytest.mark.usefixtures("committed_keys")

PASSWORD = "a long enough passphrase"
HIGH = 1_000_000
ClientFrom = Callable[[str], AsyncClient]


def new_ip() -> str:
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def limited(settings: Settings, **limits: int) -> Settings:
    values = {
        f"{action}_{scope}": HIGH
        for action in ("register", "forgot", "reset", "refresh")
        for scope in ("ip_per_hour", "global_per_minute")
    }
    identity = settings.identity.model_copy(update={**values, **limits})
    return settings.model_copy(update={"identity": identity})


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_password_reset(self, *, email: str, link: str) -> None:
        self.sent.append(link)

    async def send_invitation(self, *, email: str, link: str, tenant_name: str, role: str) -> None:
        self.sent.append(link)


@pytest.fixture(autouse=True)
async def _fresh_global_counters(redis: Redis, settings: Settings) -> None:
    # Everyone's counters are shared with the other tests of the run; start each test at zero.
    limits = PublicLimits(redis, settings.identity)
    await redis.delete(*(limits.global_key(action) for action in PublicAction))


@asynccontextmanager
async def serving_from(app: FastAPI) -> AsyncIterator[ClientFrom]:
    """Clients of one running app, each seen coming from the IP it is asked for."""
    clients: list[AsyncClient] = []
    async with LifespanManager(app) as manager:

        def client_from(ip: str) -> AsyncClient:
            transport = ASGITransport(manager.app, raise_app_exceptions=False, client=(ip, 40000))
            client = AsyncClient(transport=transport, base_url="http://testserver")
            clients.append(client)
            return client

        try:
            yield client_from
        finally:
            for client in clients:
                await client.aclose()


@asynccontextmanager
async def app_with(
    settings: Settings, sessionmaker: SessionMaker, **limits: int
) -> AsyncIterator[tuple[FastAPI, ClientFrom]]:
    app = use_test_transaction(create_app(limited(settings, **limits)), sessionmaker)
    async with serving_from(app) as client_from:
        yield app, client_from


async def register(client: AsyncClient, email: str) -> Response:
    return await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "tenant_name": "Acme"},
    )


def assert_refused(response: Response, code: str, *, max_retry: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == 429
    assert 1 <= int(response.headers["Retry-After"]) <= max_retry


async def users_named(db_session: AsyncSession, email: str) -> int:
    return int(await db_session.scalar(select(func.count()).where(User.email == email)) or 0)


async def test_register_allows_exactly_n_per_ip_then_429_and_stores_nothing(
    settings: Settings, sessionmaker: SessionMaker, db_session: AsyncSession
) -> None:
    async with app_with(settings, sessionmaker, register_ip_per_hour=3) as (_, client_from):
        crowded, other = client_from(new_ip()), client_from(new_ip())
        accepted = [(await register(crowded, new_email())).status_code for _ in range(3)]
        refused_email = new_email()
        refused = await register(crowded, refused_email)
        elsewhere = await register(other, new_email())

    assert accepted == [201, 201, 201]
    assert_refused(refused, "identity.register_rate_limited", max_retry=3600)
    assert await users_named(db_session, refused_email) == 0
    assert elsewhere.status_code == 201  # another address has its own count


async def test_register_global_limit_counts_every_address(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_with(settings, sessionmaker, register_global_per_minute=2) as (_, client_from):
        accepted = [(await register(client_from(new_ip()), new_email())).status_code for _ in "ab"]
        refused = await register(client_from(new_ip()), new_email())

    assert accepted == [201, 201]
    assert_refused(refused, "identity.register_rate_limited", max_retry=60)
    assert "right now" in refused.json()["detail"]


async def test_per_ip_refusals_spend_none_of_the_global_budget(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    limits = {"forgot_ip_per_hour": 1, "forgot_global_per_minute": 3}
    async with app_with(settings, sessionmaker, **limits) as (_, client_from):
        noisy = client_from(new_ip())
        first = await noisy.post("/api/v1/auth/password/forgot", json={"email": new_email()})
        noise = [
            await noisy.post("/api/v1/auth/password/forgot", json={"email": new_email()})
            for _ in range(5)
        ]
        others = [
            await client_from(new_ip()).post(
                "/api/v1/auth/password/forgot", json={"email": new_email()}
            )
            for _ in range(3)
        ]

    assert first.status_code == 202
    for response in noise:
        assert_refused(response, "identity.password_forgot_rate_limited", max_retry=3600)
        assert "from this address" in response.json()["detail"]
    # Global budget 3: the noisy address spent one, so two others pass and the third is refused.
    assert [r.status_code for r in others] == [202, 202, 429]
    assert others[2].json()["code"] == "identity.password_forgot_rate_limited"


async def test_forgot_refused_sends_nothing_and_stores_no_token(
    settings: Settings, sessionmaker: SessionMaker, db_session: AsyncSession
) -> None:
    email = new_email()
    async with app_with(settings, sessionmaker, forgot_ip_per_hour=1) as (app, client_from):
        notifier = RecordingNotifier()
        app.state.notifier = notifier
        client = client_from(new_ip())
        assert (await register(client, email)).status_code == 201
        user_id = await db_session.scalar(select(User.id).where(User.email == email))
        first = await client.post("/api/v1/auth/password/forgot", json={"email": new_email()})
        refused = await client.post("/api/v1/auth/password/forgot", json={"email": email})

    assert first.status_code == 202
    assert_refused(refused, "identity.password_forgot_rate_limited", max_retry=3600)
    assert notifier.sent == []
    tokens = await db_session.scalar(
        select(func.count()).where(PasswordResetToken.user_id == user_id)
    )
    assert tokens == 0


async def test_reset_refused_does_not_spend_the_token(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    email = new_email()
    async with app_with(settings, sessionmaker, reset_ip_per_hour=1) as (app, client_from):
        notifier = RecordingNotifier()
        app.state.notifier = notifier
        client = client_from(new_ip())
        assert (await register(client, email)).status_code == 201
        await client.post("/api/v1/auth/password/forgot", json={"email": email})
        token = notifier.sent[0].split("token=")[1]
        body = {"token": token, "new_password": "a brand new passphrase"}
        wrong = await client.post(
            "/api/v1/auth/password/reset", json={**body, "token": token[:-4] + "AAAA"}
        )
        refused = await client.post("/api/v1/auth/password/reset", json=body)
        old_password = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        elsewhere = await client_from(new_ip()).post("/api/v1/auth/password/reset", json=body)

    assert wrong.status_code == 400  # counted like any other attempt
    assert_refused(refused, "identity.password_reset_rate_limited", max_retry=3600)
    assert old_password.status_code == 200
    assert elsewhere.status_code == 204  # the token was still good


async def test_refresh_refused_does_not_spend_the_token(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    email = new_email()
    async with app_with(settings, sessionmaker, refresh_ip_per_hour=1) as (_, client_from):
        client = client_from(new_ip())
        assert (await register(client, email)).status_code == 201
        login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        first = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        current = first.json()["refresh_token"]
        refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": current})
        elsewhere = await client_from(new_ip()).post(
            "/api/v1/auth/refresh", json={"refresh_token": current}
        )

    assert first.status_code == 200
    assert_refused(refused, "identity.refresh_rate_limited", max_retry=3600)
    assert elsewhere.status_code == 200  # not spent, so not taken for reuse


async def test_limits_are_exact_at_the_edge(redis: Redis) -> None:
    settings = IdentitySettings(register_ip_per_hour=5, register_global_per_minute=HIGH)
    limits = PublicLimits(redis, settings)
    ip = new_ip()

    for _ in range(5):
        await limits.check(PublicAction.register, ip=ip)
    with pytest.raises(RegisterRateLimitedError) as refused:
        await limits.check(PublicAction.register, ip=ip)
    await limits.check(PublicAction.forgot, ip=ip)  # another endpoint keeps its own count

    assert refused.value.code == "identity.register_rate_limited"
    assert 3590 <= int(refused.value.headers["Retry-After"]) <= 3600


async def test_a_zero_limit_refuses_everything(redis: Redis) -> None:
    limits = PublicLimits(redis, IdentitySettings(refresh_global_per_minute=0))
    with pytest.raises(RefreshRateLimitedError, match="right now"):
        await limits.check(PublicAction.refresh, ip=new_ip())


def test_openapi_names_the_429_of_each_limited_endpoint(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]

    for path in ("register", "refresh", "password/forgot", "password/reset", "invitations/accept"):
        assert "429" in paths[f"/api/v1/auth/{path}"]["post"]["responses"], path


async def test_accept_refused_does_not_spend_the_invitation(
    settings: Settings, sessionmaker: SessionMaker, db_session: AsyncSession
) -> None:
    guest = new_email()
    async with app_with(settings, sessionmaker, accept_ip_per_hour=1) as (app, client_from):
        notifier = InvitationRecorder()
        app.state.notifier = notifier
        client = client_from(new_ip())
        boss = await owner(client)
        invited = await client.post(
            "/api/v1/tenant/invitations",
            json={"email": guest, "role": "member"},
            headers=boss.headers,
        )
        body = {"token": notifier.token_for(guest), "password": PASSWORD}
        wrong = await client.post(
            "/api/v1/auth/invitations/accept", json={**body, "token": body["token"][:-4] + "AAAA"}
        )
        refused = await client.post("/api/v1/auth/invitations/accept", json=body)
        created_when_refused = await users_named(db_session, guest)
        elsewhere = await client_from(new_ip()).post("/api/v1/auth/invitations/accept", json=body)

    assert invited.status_code == 201
    assert wrong.status_code == 401  # counted like any other attempt
    assert_refused(refused, "identity.invitation_accept_rate_limited", max_retry=3600)
    assert created_when_refused == 0
    assert elsewhere.status_code == 200  # the invitation was still good
