"""Sign-up and sign-in sessions: registration, login, refresh-token rotation, logout, the caller.

Two outcomes must stick though the request fails: a refused login's event, and the revocation
of a refresh-token family (reuse, or access lost). Each is written in a short transaction of its
own, after the request's transaction is rolled back (see ``SessionService._apart``); everything
else, a successful login's event included, commits or rolls back with the request.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.errors import InvalidTokenError
from switchboard.auth.principal import OPERATOR_ROLE, Principal
from switchboard.auth.settings import IdpMode
from switchboard.auth.tokens import TokenType
from switchboard.identity.errors import (
    EmailTakenError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
)
from switchboard.identity.passwords import PasswordHasher, check_password_policy
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import (
    MeRead,
    RegisterRequest,
    RegisterResult,
    TenantRead,
    TokenPair,
    UserRead,
)
from switchboard.identity.secrets import (
    event_hash,
    new_token,
    parse_token,
    secret_hash,
    secret_matches,
    token_pepper,
)
from switchboard.identity.throttle import (
    AccountLockedError,
    LoginAttempt,
    LoginRateLimitedError,
    LoginThrottle,
)
from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, RefreshToken, User, UserProfile
from switchboard.settings import Settings

log = structlog.get_logger("switchboard.identity")

REFRESH_PREFIX = "rt"
# AUTH_IDP_MODE=demo (development only): this fixed login signs in as the demo owner.
DEMO_EMAIL = "demo@switchboard.dev"
DEMO_LOGIN_PASSWORD = "demo"  # noqa: S105 (documented development-only credential)


@dataclass(frozen=True)
class Client:
    """Where a request came from, as far as the API can tell."""

    ip: str
    user_agent: str | None


@dataclass
class SessionService:
    session: AsyncSession
    sessionmaker: SessionMaker
    settings: Settings
    hasher: PasswordHasher
    throttle: LoginThrottle
    authority: TokenAuthority

    @property
    def repo(self) -> IdentityRepository:
        return IdentityRepository(self.session)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _hash(self, value: str) -> str:
        return event_hash(self.settings.identity, value)

    @asynccontextmanager
    async def _apart(self) -> AsyncIterator[IdentityRepository]:
        """A transaction of its own for what must stick though the request fails.

        The request's transaction is rolled back first, so none of its work is committed here,
        its locks (a claimed token) cannot block this one, and its connection is back in the
        pool rather than held while this one takes another. Read what you need from ORM
        objects before: the rollback expires them."""
        await self.session.rollback()
        async with self.sessionmaker.begin() as session:
            yield IdentityRepository(session)

    # --- registration -------------------------------------------------------------------

    async def register(self, request: RegisterRequest) -> RegisterResult:
        identity = self.settings.identity
        check_password_policy(
            request.password,
            email=request.email,
            min_length=identity.password_min_length,
            max_length=identity.password_max_length,
        )
        if await self.repo.user_by_email(request.email) is not None:
            raise EmailTakenError("An account with this email exists; sign in instead.")
        hashed = await self.hasher.hash_async(request.password)
        tenant = self.repo.add_tenant(request.tenant_name)
        user = self.repo.add_user(request.email, hashed)
        try:
            await self.repo.flush()
        except IntegrityError:
            # Two registrations of one email raced; the unique index decided.
            raise EmailTakenError("An account with this email exists; sign in instead.") from None
        profile = self.repo.add_profile(user.id, request.display_name)
        self.repo.add_membership(user.id, tenant.id, "owner")
        await self.repo.flush()
        log.info("identity.registered", user_id=str(user.id), tenant_id=str(tenant.id))
        return RegisterResult(
            user=_user_read(user, profile), tenant=TenantRead.model_validate(tenant)
        )

    # --- sign-in ------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, client: Client, tenant_id: uuid.UUID | None = None
    ) -> TokenPair:
        """Every attempt leaves a login event. A refused one is committed here, on its own,
        before this raises; a successful one commits with the request."""
        account = email.lower()
        if (
            self.settings.auth.idp_mode is IdpMode.demo
            and account == DEMO_EMAIL
            and password == DEMO_LOGIN_PASSWORD
        ):
            demo_user, demo_membership = await self._demo_owner()
            self._event(self.repo, demo_user.id, account, client, "success", "demo")
            return await self.issue_pair(demo_user, demo_membership, client)
        try:
            attempt = await self.throttle.begin(account=account, ip=client.ip)
        except (AccountLockedError, LoginRateLimitedError) as refused:
            await self._refused(None, account, client, refused)
            raise

        user = await self.repo.user_by_email(account)
        if user is None:
            # Same bcrypt work as a real check, so timing does not reveal unknown emails.
            await self.hasher.verify_dummy_async(password)
            await self._failed(None, account, client, attempt, "unknown_email")
        else:
            ok = await self.hasher.verify_async(password, user.password_hash, user.pepper_version)
            if not ok:
                await self._failed(user, account, client, attempt, "bad_password")
            if user.status != "active":
                await self._failed(user, account, client, attempt, "disabled")
        assert user is not None

        membership = await self.repo.membership(user.id, tenant_id)
        if membership is None:
            await self._failed(user, account, client, attempt, "no_membership")
        assert membership is not None
        try:
            await self.throttle.succeed(attempt)
        except AccountLockedError as refused:
            # Another attempt locked the account while this password was checked.
            await self._refused(user.id, account, client, refused)
            raise
        if self.hasher.needs_rehash(user.password_hash, user.pepper_version):
            upgraded = await self.hasher.hash_async(password)
            user.password_hash, user.pepper_version = upgraded.value, upgraded.pepper_version
            log.info("identity.password_rehashed", user_id=str(user.id))
        self._event(self.repo, user.id, account, client, "success", None)
        return await self.issue_pair(user, membership, client)

    async def _demo_owner(self) -> tuple[User, Membership]:
        user = await self.repo.user_by_email(DEMO_EMAIL)
        if user is None:
            tenant = self.repo.add_tenant("Demo")
            unusable = await self.hasher.hash_async(secrets.token_urlsafe(32))
            user = self.repo.add_user(DEMO_EMAIL, unusable, email_verified=True)
            await self.repo.flush()
            self.repo.add_membership(user.id, tenant.id, "owner")
            await self.repo.flush()
        membership = await self.repo.membership(user.id)
        assert membership is not None
        return user, membership

    async def _refused(
        self,
        user_id: uuid.UUID | None,
        account: str,
        client: Client,
        refused: AccountLockedError | LoginRateLimitedError,
    ) -> None:
        result = "locked" if isinstance(refused, AccountLockedError) else "rate_limited"
        async with self._apart() as repo:
            self._event(repo, user_id, account, client, result, refused.code)

    async def _failed(
        self,
        user: User | None,
        account: str,
        client: Client,
        attempt: LoginAttempt,
        reason: str,
    ) -> None:
        user_id = user.id if user else None
        async with self._apart() as repo:
            self._event(repo, user_id, account, client, "failure", reason)
        if attempt.locks_for is not None:
            log.warning(
                "identity.account_locked",
                seconds=attempt.locks_for,
                email_hash=self._hash(account),
            )
        raise InvalidCredentialsError()

    def _event(
        self,
        repo: IdentityRepository,
        user_id: uuid.UUID | None,
        account: str,
        client: Client,
        result: str,
        reason: str | None,
    ) -> None:
        repo.add_login_event(
            user_id=user_id,
            email_hash=self._hash(account),
            ip_hash=self._hash(client.ip),
            user_agent=(client.user_agent or "")[:512] or None,
            result=result,
            reason=reason,
        )

    # --- tokens -------------------------------------------------------------------------

    async def issue_pair(
        self,
        user: User,
        membership: Membership,
        client: Client,
        *,
        parent: RefreshToken | None = None,
    ) -> TokenPair:
        now = self._now()
        identity = self.settings.identity
        roles = [membership.role] + ([OPERATOR_ROLE] if user.is_platform_operator else [])
        access = await self.authority.issue(
            TokenType.access, str(user.id), {"tid": str(membership.tenant_id), "roles": roles}
        )
        family_expires = (
            parent.family_expires_at
            if parent is not None
            else now + timedelta(seconds=identity.refresh_family_max_seconds)
        )
        expires = min(now + timedelta(seconds=identity.refresh_token_ttl_seconds), family_expires)
        token = new_token(REFRESH_PREFIX)
        self.repo.add_refresh_token(
            RefreshToken(
                family_id=parent.family_id if parent is not None else uuid.uuid4(),
                parent_id=parent.id if parent is not None else None,
                selector=token.selector,
                secret_hash=secret_hash(token_pepper(self.settings.auth), token.secret),
                signing_kid=None,
                user_id=user.id,
                tenant_id=membership.tenant_id,
                client_fingerprint=self._hash(client.user_agent) if client.user_agent else None,
                issued_at=now,
                expires_at=expires,
                family_expires_at=family_expires,
            )
        )
        await self.repo.flush()
        return TokenPair(
            access_token=access.token,
            refresh_token=token.value,
            expires_in=access.expires_at - access.issued_at,
            refresh_expires_in=int((expires - now).total_seconds()),
            kid=access.kid,
        )

    async def refresh(self, value: str, client: Client) -> TokenPair:
        """Spends ``value`` and returns a new pair. A spent token presented again is reuse:
        the whole family is revoked, committed here before this raises."""
        row = await self._refresh_row(value)
        now = self._now()
        family_id, user_id = row.family_id, row.user_id
        if row.revoked_at is not None:
            raise InvalidRefreshTokenError("revoked")
        if row.used_at is not None:
            async with self._apart() as repo:
                revoked = await repo.revoke_family(family_id, now, "reuse")
            log.warning(
                "identity.refresh_reuse",
                family_id=str(family_id),
                user_id=str(user_id),
                revoked=revoked,
            )
            raise InvalidRefreshTokenError("reuse")
        if row.expires_at <= now or row.family_expires_at <= now:
            raise InvalidRefreshTokenError("expired")
        if not await self.repo.claim_refresh(row.id, now):
            # Another request spent it between our read and our write: that one wins.
            log.info("identity.refresh_race", family_id=str(family_id))
            raise InvalidRefreshTokenError("race")
        user = await self.repo.user(user_id)
        membership = await self.repo.membership(user_id, row.tenant_id)
        if user is None or user.status != "active" or membership is None:
            async with self._apart() as repo:
                await repo.revoke_family(family_id, now, "access_lost")
            raise InvalidRefreshTokenError("access_lost")
        return await self.issue_pair(user, membership, client, parent=row)

    async def _refresh_row(self, value: str) -> RefreshToken:
        parsed = parse_token(value, REFRESH_PREFIX)
        if parsed is None:
            raise InvalidRefreshTokenError("malformed")
        row = await self.repo.refresh_by_selector(parsed.selector)
        pepper = token_pepper(self.settings.auth)
        if row is None or not secret_matches(pepper, parsed.secret, row.secret_hash):
            raise InvalidRefreshTokenError("unknown")
        return row

    async def logout(self, value: str) -> None:
        """Revokes the token's family; unknown tokens are ignored, so logout always succeeds."""
        try:
            row = await self._refresh_row(value)
        except InvalidRefreshTokenError:
            return
        await self.repo.revoke_family(row.family_id, self._now(), "logout")
        log.info("identity.logged_out", family_id=str(row.family_id), user_id=str(row.user_id))

    # --- the caller ---------------------------------------------------------------------

    async def me(self, principal: Principal) -> MeRead:
        user = await self.repo.user(principal.subject)
        tenant = await self.repo.tenant(principal.tenant_id)
        if user is None or tenant is None or user.status != "active":
            raise InvalidTokenError("subject_gone")
        profile = await self.repo.profile(user.id)
        return MeRead(
            user=_user_read(user, profile),
            tenant=TenantRead.model_validate(tenant),
            roles=sorted(principal.roles),
        )


def _user_read(user: User, profile: UserProfile | None) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        display_name=profile.display_name if profile else None,
        email_verified=user.email_verified,
        created_at=user.created_at,
    )
