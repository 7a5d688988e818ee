"""Login limits through the real app: per-IP and global limits count failed sign-ins only, and
concurrent guesses at one account never check more passwords than the lockout threshold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient, Response
from redis.asyncio import Redis

from api.main import create_app
from switchboard.identity.passwords import PasswordHasher
from switchboard.identity.throttle import LOGIN_GLOBAL_KEY
from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.identity.test_throttles import PASSWORD, app_with, new_email, new_ip, register

pytestmark = pytest.mark.usefixtures("committed_keys")

LOGIN = "/api/v1/auth/login"
WRONG = "not the password at all"
# A guard against a hang if the code under test lets no password check start; never reached.
HANG_GUARD_SECONDS = 60


async def sign_in(client: AsyncClient, email: str, password: str = PASSWORD) -> Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def test_successes_from_one_address_never_reach_its_limit_but_failures_do(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_with(settings, sessionmaker, login_ip_max_attempts=10) as (_, client_from):
        office = client_from(new_ip())
        email = new_email()
        assert (await register(office, email)).status_code == 201
        signed_in = [(await sign_in(office, email)).status_code for _ in range(40)]
        failed = [(await sign_in(office, new_email(), WRONG)).status_code for _ in range(10)]
        refused = await sign_in(office, email)
        elsewhere = await sign_in(client_from(new_ip()), email)

    assert signed_in == [200] * 40
    assert failed == [401] * 10
    assert refused.status_code == 429
    assert refused.json()["code"] == "identity.login_rate_limited"
    assert "from this address" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert elsewhere.status_code == 200


async def test_failed_logins_from_every_address_share_a_ceiling_per_minute(
    settings: Settings, sessionmaker: SessionMaker, redis: Redis
) -> None:
    await redis.delete(LOGIN_GLOBAL_KEY)  # everyone's count is shared with the rest of the run
    limits = {"login_global_failures_per_minute": 3}
    async with app_with(settings, sessionmaker, **limits) as (_, client_from):
        email = new_email()
        assert (await register(client_from(new_ip()), email)).status_code == 201
        signed_in = [(await sign_in(client_from(new_ip()), email)).status_code for _ in range(5)]
        failed = [
            (await sign_in(client_from(new_ip()), new_email(), WRONG)).status_code for _ in range(3)
        ]
        refused = await sign_in(client_from(new_ip()), email)

    assert signed_in == [200] * 5
    assert failed == [401] * 3
    assert refused.status_code == 429
    assert refused.json()["code"] == "identity.login_rate_limited"
    assert "right now" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


class GatedHasher(PasswordHasher):
    """Counts password checks and holds each one until the test opens the gate."""

    def __init__(self, peppers: Mapping[int, bytes], *, cost: int) -> None:
        super().__init__(peppers, cost=cost)
        self.checks = 0
        self.gate = asyncio.Event()
        self._started = asyncio.Condition()

    async def _check_starts(self) -> None:
        async with self._started:
            self.checks += 1
            self._started.notify_all()
        await self.gate.wait()

    async def started(self, checks: int) -> None:
        async def reached() -> None:
            async with self._started:
                await self._started.wait_for(lambda: self.checks >= checks)

        await asyncio.wait_for(reached(), HANG_GUARD_SECONDS)

    async def verify_async(self, password: str, stored: str, pepper_version: int) -> bool:
        await self._check_starts()
        return await super().verify_async(password, stored, pepper_version)

    async def verify_dummy_async(self, password: str) -> None:
        await self._check_starts()
        await super().verify_dummy_async(password)


@asynccontextmanager
async def committing_app(settings: Settings) -> AsyncIterator[tuple[AsyncClient, GatedHasher]]:
    """The app on its own connection pool (concurrent requests need their own connections),
    lockout after 5 failures, its password checks held by a gate."""
    identity = settings.identity.model_copy(update={"lockout_threshold": 5})
    app = create_app(settings.model_copy(update={"identity": identity}))
    async with LifespanManager(app) as manager:
        hasher = GatedHasher.from_settings(identity)
        assert isinstance(hasher, GatedHasher)
        app.state.password_hasher = hasher
        transport = ASGITransport(manager.app, client=(new_ip(), 50000))
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, hasher


def statuses(responses: list[Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


async def test_concurrent_guesses_check_at_most_the_threshold_of_passwords(
    settings: Settings,
) -> None:
    async with committing_app(settings) as (client, hasher):
        email = new_email()
        assert (await register(client, email)).status_code == 201
        burst = [asyncio.create_task(sign_in(client, email, WRONG)) for _ in range(20)]
        # Every guess the code lets through is now waiting at the gate, none yet answered 401.
        await hasher.started(5)
        hasher.gate.set()
        answers = await asyncio.gather(*burst)

    assert hasher.checks == 5
    assert statuses(answers) == [401] * 5 + [423] * 15
    locked = [answer for answer in answers if answer.status_code == 423]
    assert {answer.json()["code"] for answer in locked} == {"identity.account_locked"}


async def test_a_right_password_checked_while_a_burst_locks_the_account_is_refused(
    settings: Settings,
) -> None:
    async with committing_app(settings) as (client, hasher):
        email = new_email()
        assert (await register(client, email)).status_code == 201
        right = asyncio.create_task(sign_in(client, email))
        await hasher.started(1)  # the right password holds the first place, at the gate
        burst = [asyncio.create_task(sign_in(client, email, WRONG)) for _ in range(20)]
        await hasher.started(5)  # four guesses took the other places; the last one locked
        hasher.gate.set()
        answers = await asyncio.gather(*burst)
        refused = await right
        afterwards = await sign_in(client, email)

    assert hasher.checks == 5
    assert statuses(answers) == [401] * 4 + [423] * 16
    assert refused.status_code == 423
    assert refused.json()["code"] == "identity.account_locked"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert afterwards.status_code == 423
