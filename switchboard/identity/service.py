"""The identity service the API calls: one entry point over sign-in sessions
(``sessions.py``), password reset (``password_reset.py``), service accounts
(``service_accounts.py``), a tenant's members (``members.py``) and invitations
(``invitations.py``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.principal import Principal
from switchboard.billing.service import BillingService
from switchboard.identity.invitations import InvitationService
from switchboard.identity.members import MembersService
from switchboard.identity.notifier import Notifier
from switchboard.identity.password_reset import PasswordResetService
from switchboard.identity.passwords import PasswordHasher
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import (
    InvitationAccept,
    InvitationRead,
    MemberRead,
    MeRead,
    RegisterRequest,
    RegisterResult,
    ServiceToken,
    TenantMembershipRead,
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
from switchboard.kit.pagination import Page
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
        self._members = MembersService(repo)
        self._invitations = InvitationService(
            repo, BillingService(session), self._sessions, settings, hasher, notifier
        )

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

    # --- tenants and members --------------------------------------------------------------

    async def current(self, principal: Principal) -> Principal:
        """The caller with its role as it is now in Postgres (the token's may be stale)."""
        return await self._members.current(principal)

    async def tenants(self, principal: Principal) -> list[TenantMembershipRead]:
        return await self._members.tenants(principal)

    async def members(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[MemberRead]:
        return await self._members.members(principal.tenant_id, limit=limit, cursor=cursor)

    async def change_member_role(
        self, actor: Principal, user_id: uuid.UUID, role: str
    ) -> MemberRead:
        return await self._members.change_role(actor, user_id, role)

    async def remove_member(self, actor: Principal, user_id: uuid.UUID) -> None:
        await self._members.remove(actor, user_id)

    async def invite(self, actor: Principal, email: str, role: str) -> InvitationRead:
        return await self._invitations.invite(actor, email, role)

    async def invitations(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[InvitationRead]:
        return await self._invitations.pending(principal, limit=limit, cursor=cursor)

    async def revoke_invitation(self, actor: Principal, invitation_id: uuid.UUID) -> None:
        await self._invitations.revoke(actor, invitation_id)

    async def accept_invitation(self, request: InvitationAccept, client: Client) -> TokenPair:
        return await self._invitations.accept(request, client)
