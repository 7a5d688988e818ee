"""The identity service the API calls: one entry point over sign-in sessions
(``sessions.py``), password reset (``password_reset.py``) and service accounts
(``service_accounts.py``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.principal import Principal
from switchboard.identity.notifier import Notifier
from switchboard.identity.password_reset import PasswordResetService
from switchboard.identity.passwords import PasswordHasher
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import (
    MeRead,
    RegisterRequest,
    RegisterResult,
    ServiceToken,
    TokenPair,
)
from switchboard.identity.service_accounts import (
    NewServiceCredential,
    ServiceAccountService,
    create_service_account,
)
from switchboard.identity.sessions import Client, SessionService
from switchboard.identity.throttle import LoginThrottle
from switchboard.kit.db import SessionMaker
from switchboard.kit.ratelimit import RateLimiter
from switchboard.settings import Settings

__all__ = ["Client", "IdentityService", "NewServiceCredential", "create_service_account"]


class IdentityService:
    """Works in the request's ``session`` and never commits it. ``sessionmaker`` is for the two
    outcomes that commit on their own though the request fails: a refused login's event and a
    refresh-token family revoked on reuse or lost access."""

    def __init__(
        self,
        *,
        session: AsyncSession,
        sessionmaker: SessionMaker,
        settings: Settings,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        authority: TokenAuthority,
        notifier: Notifier,
    ) -> None:
        repo = IdentityRepository(session)
        self._sessions = SessionService(
            session, sessionmaker, settings, hasher, throttle, authority
        )
        self._password_reset = PasswordResetService(repo, settings, hasher, notifier)
        self._service_accounts = ServiceAccountService(repo, settings, authority)

    async def register(self, request: RegisterRequest) -> RegisterResult:
        return await self._sessions.register(request)

    async def login(
        self, email: str, password: str, client: Client, tenant_id: uuid.UUID | None = None
    ) -> TokenPair:
        return await self._sessions.login(email, password, client, tenant_id)

    async def refresh(self, value: str, client: Client) -> TokenPair:
        return await self._sessions.refresh(value, client)

    async def logout(self, value: str) -> None:
        await self._sessions.logout(value)

    async def me(self, principal: Principal) -> MeRead:
        return await self._sessions.me(principal)

    async def forgot_password(self, email: str) -> None:
        await self._password_reset.forgot_password(email)

    async def reset_password(self, value: str, new_password: str) -> None:
        await self._password_reset.reset_password(value, new_password)

    async def service_token(
        self,
        client_id: str,
        client_secret: str,
        nonce: str,
        *,
        limiter: RateLimiter,
        replays: ReplayCache,
    ) -> ServiceToken:
        return await self._service_accounts.service_token(
            client_id, client_secret, nonce, limiter=limiter, replays=replays
        )
