"""Registration, sign-in, refresh-token rotation, sign-out, password reset, service tokens."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.errors import InvalidTokenError
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.principal import OPERATOR_ROLE, Principal
from switchboard.auth.settings import IdpMode
from switchboard.auth.tokens import TokenType
from switchboard.identity.errors import (
    EmailTakenError,
    InvalidClientError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    InvalidResetTokenError,
)
from switchboard.identity.notifier import Notifier
from switchboard.identity.passwords import PasswordHasher, check_password_policy
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import (
    MeRead,
    RegisterRequest,
    RegisterResult,
    ServiceToken,
    TenantRead,
    TokenPair,
    UserRead,
)
from switchboard.identity.secrets import (
    keyed_hash,
    new_token,
    parse_token,
    secret_hash,
    secret_matches,
)
from switchboard.identity.throttle import AccountLockedError, LoginRateLimitedError, LoginThrottle
from switchboard.kit.ratelimit import RateLimiter
from switchboard.models import (
    Membership,
    PasswordResetToken,
    RefreshToken,
    ServiceAccount,
    ServiceAccountCredential,
    Tenant,
    User,
    UserLoginEvent,
    UserProfile,
)
from switchboard.settings import Settings

log = structlog.get_logger("switchboard.identity")

REFRESH_PREFIX = "rt"
RESET_PREFIX = "prt"
# AUTH_IDP_MODE=demo (development only): this fixed login signs in as the demo owner.
DEMO_EMAIL = "demo@switchboard.dev"
DEMO_LOGIN_PASSWORD = "demo"  # noqa: S105 (documented development-only credential)


@dataclass(frozen=True)
class Client:
    """Where a request came from, as far as the API can tell."""

    ip: str
    user_agent: str | None


@dataclass
class IdentityService:
    session: AsyncSession
    settings: Settings
    hasher: PasswordHasher
    throttle: LoginThrottle
    authority: TokenAuthority
    notifier: Notifier

    @property
    def repo(self) -> IdentityRepository:
        return IdentityRepository(self.session)

    @property
    def _pepper(self) -> bytes:
        return self.settings.auth.refresh_token_pepper.get_secret_value().encode()

    @property
    def _salt(self) -> bytes:
        return self.settings.identity.ip_hash_salt.get_secret_value().encode()

    def _now(self) -> datetime:
        return datetime.now(UTC)

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
        tenant = Tenant(name=request.tenant_name)
        self.session.add(tenant)
        user = self.repo.add_user(request.email, hashed)
        try:
            await self.session.flush()
        except IntegrityError:
            # Two registrations of one email raced; the unique index decided.
            raise EmailTakenError("An account with this email exists; sign in instead.") from None
        profile = UserProfile(user_id=user.id, display_name=request.display_name)
        membership = Membership(user_id=user.id, tenant_id=tenant.id, role="owner")
        self.session.add_all([profile, membership])
        await self.session.flush()
        log.info("identity.registered", user_id=str(user.id), tenant_id=str(tenant.id))
        return RegisterResult(
            user=_user_read(user, profile), tenant=TenantRead.model_validate(tenant)
        )

    # --- sign-in ------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, client: Client, tenant_id: uuid.UUID | None = None
    ) -> TokenPair:
        """Every attempt leaves a login event; callers commit it even when this raises."""
        account = email.lower()
        if (
            self.settings.auth.idp_mode is IdpMode.demo
            and account == DEMO_EMAIL
            and password == DEMO_LOGIN_PASSWORD
        ):
            demo_user, demo_membership = await self._demo_owner()
            self._event(demo_user, account, client, "success", "demo")
            return await self._issue_pair(demo_user, demo_membership, client)
        try:
            await self.throttle.before_attempt(account=account, ip=client.ip)
        except (AccountLockedError, LoginRateLimitedError) as refused:
            result = "locked" if isinstance(refused, AccountLockedError) else "rate_limited"
            self._event(None, account, client, result, refused.code)
            raise

        user = await self.repo.user_by_email(account)
        if user is None:
            # Same bcrypt work as a real check, so timing does not reveal unknown emails.
            await self.hasher.verify_dummy_async(password)
            await self._failed(None, account, client, "unknown_email")
        else:
            ok = await self.hasher.verify_async(password, user.password_hash, user.pepper_version)
            if not ok:
                await self._failed(user, account, client, "bad_password")
            if user.status != "active":
                await self._failed(user, account, client, "disabled")
        assert user is not None

        membership = await self.repo.membership(user.id, tenant_id)
        if membership is None:
            await self._failed(user, account, client, "no_membership")
        assert membership is not None
        await self.throttle.record_success(account=account)
        if self.hasher.needs_rehash(user.password_hash, user.pepper_version):
            upgraded = await self.hasher.hash_async(password)
            user.password_hash, user.pepper_version = upgraded.value, upgraded.pepper_version
            log.info("identity.password_rehashed", user_id=str(user.id))
        self._event(user, account, client, "success", None)
        return await self._issue_pair(user, membership, client)

    async def _demo_owner(self) -> tuple[User, Membership]:
        user = await self.repo.user_by_email(DEMO_EMAIL)
        if user is None:
            tenant = Tenant(name="Demo")
            self.session.add(tenant)
            unusable = await self.hasher.hash_async(secrets.token_urlsafe(32))
            user = self.repo.add_user(DEMO_EMAIL, unusable, email_verified=True)
            await self.session.flush()
            self.session.add(Membership(user_id=user.id, tenant_id=tenant.id, role="owner"))
            await self.session.flush()
        membership = await self.repo.membership(user.id)
        assert membership is not None
        return user, membership

    async def _failed(self, user: User | None, account: str, client: Client, reason: str) -> None:
        self._event(user, account, client, "failure", reason)
        locked_for = await self.throttle.record_failure(account=account)
        if locked_for is not None:
            log.warning(
                "identity.account_locked", seconds=locked_for, email_hash=self._hash(account)
            )
        raise InvalidCredentialsError()

    def _event(
        self, user: User | None, account: str, client: Client, result: str, reason: str | None
    ) -> None:
        self.session.add(
            UserLoginEvent(
                user_id=user.id if user else None,
                email_hash=self._hash(account),
                ip_hash=self._hash(client.ip),
                user_agent=(client.user_agent or "")[:512] or None,
                result=result,
                reason=reason,
            )
        )

    def _hash(self, value: str) -> str:
        return keyed_hash(self._salt, value)

    # --- tokens -------------------------------------------------------------------------

    async def _issue_pair(
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
        self.session.add(
            RefreshToken(
                family_id=parent.family_id if parent is not None else uuid.uuid4(),
                parent_id=parent.id if parent is not None else None,
                selector=token.selector,
                secret_hash=secret_hash(self._pepper, token.secret),
                signing_kid=None,
                user_id=user.id,
                tenant_id=membership.tenant_id,
                client_fingerprint=self._hash(client.user_agent) if client.user_agent else None,
                issued_at=now,
                expires_at=expires,
                family_expires_at=family_expires,
            )
        )
        await self.session.flush()
        return TokenPair(
            access_token=access.token,
            refresh_token=token.value,
            expires_in=access.expires_at - access.issued_at,
            refresh_expires_in=int((expires - now).total_seconds()),
            kid=access.kid,
        )

    async def refresh(self, value: str, client: Client) -> TokenPair:
        """Spends ``value`` and returns a new pair. A spent token presented again is reuse:
        the whole family is revoked (callers commit that even though this raises)."""
        row = await self._refresh_row(value)
        now = self._now()
        if row.revoked_at is not None:
            raise InvalidRefreshTokenError("revoked")
        if row.used_at is not None:
            revoked = await self.repo.revoke_family(row.family_id, now, "reuse")
            log.warning(
                "identity.refresh_reuse",
                family_id=str(row.family_id),
                user_id=str(row.user_id),
                revoked=revoked,
            )
            raise InvalidRefreshTokenError("reuse")
        if row.expires_at <= now or row.family_expires_at <= now:
            raise InvalidRefreshTokenError("expired")
        if not await self.repo.claim_refresh(row.id, now):
            # Another request spent it between our read and our write: that one wins.
            log.info("identity.refresh_race", family_id=str(row.family_id))
            raise InvalidRefreshTokenError("race")
        user = await self.repo.user(row.user_id)
        membership = await self.repo.membership(row.user_id, row.tenant_id)
        if user is None or user.status != "active" or membership is None:
            await self.repo.revoke_family(row.family_id, now, "access_lost")
            raise InvalidRefreshTokenError("access_lost")
        return await self._issue_pair(user, membership, client, parent=row)

    async def _refresh_row(self, value: str) -> RefreshToken:
        parsed = parse_token(value, REFRESH_PREFIX)
        if parsed is None:
            raise InvalidRefreshTokenError("malformed")
        row = await self.repo.refresh_by_selector(parsed.selector)
        if row is None or not secret_matches(self._pepper, parsed.secret, row.secret_hash):
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
        user = await self.repo.user(_uuid(principal.subject))
        tenant = await self.repo.tenant(_uuid(principal.tenant_id))
        if user is None or tenant is None or user.status != "active":
            raise InvalidTokenError("subject_gone")
        profile = await self.repo.profile(user.id)
        return MeRead(
            user=_user_read(user, profile),
            tenant=TenantRead.model_validate(tenant),
            roles=sorted(principal.roles),
        )

    # --- password reset -----------------------------------------------------------------

    async def forgot_password(self, email: str) -> None:
        """Sends a reset link if the account exists; the caller answers 202 either way."""
        user = await self.repo.user_by_email(email)
        if user is None or user.status != "active":
            log.info("identity.password_reset_unknown", email_hash=self._hash(email.lower()))
            return
        token = new_token(RESET_PREFIX)
        ttl = timedelta(seconds=self.settings.identity.reset_token_ttl_seconds)
        self.session.add(
            PasswordResetToken(
                user_id=user.id,
                selector=token.selector,
                secret_hash=secret_hash(self._pepper, token.secret),
                expires_at=self._now() + ttl,
            )
        )
        await self.session.flush()
        link = self.settings.identity.reset_url + token.value
        await self.notifier.send_password_reset(email=user.email, link=link)

    async def reset_password(self, value: str, new_password: str) -> None:
        parsed = parse_token(value, RESET_PREFIX)
        row = await self.repo.reset_by_selector(parsed.selector) if parsed else None
        now = self._now()
        if (
            parsed is None
            or row is None
            or not secret_matches(self._pepper, parsed.secret, row.secret_hash)
            or row.used_at is not None
            or row.expires_at <= now
        ):
            raise InvalidResetTokenError()
        user = await self.repo.user(row.user_id)
        if user is None:
            raise InvalidResetTokenError()
        identity = self.settings.identity
        # Checked before the token is spent, so a weak choice does not burn the link.
        check_password_policy(
            new_password,
            email=user.email,
            min_length=identity.password_min_length,
            max_length=identity.password_max_length,
        )
        if not await self.repo.claim_reset(row.id, now):
            raise InvalidResetTokenError()
        hashed = await self.hasher.hash_async(new_password)
        user.password_hash, user.pepper_version = hashed.value, hashed.pepper_version
        user.password_changed_at = now
        await self.repo.spend_user_resets(user.id, now)
        revoked = await self.repo.revoke_user_tokens(user.id, now, "password_reset")
        log.info("identity.password_reset", user_id=str(user.id), revoked_tokens=revoked)

    # --- service accounts ---------------------------------------------------------------

    async def service_token(
        self,
        client_id: str,
        client_secret: str,
        nonce: str,
        *,
        limiter: RateLimiter,
        replays: ReplayCache,
    ) -> ServiceToken:
        await limiter.check(
            client_id, limit=self.settings.identity.service_rate_limit_per_minute, window_seconds=60
        )
        found = await self.repo.credential(client_id)
        if found is None:
            raise InvalidClientError()
        credential, account = found
        if (
            credential.revoked_at is not None
            or account.status != "active"
            or not secret_matches(self._pepper, client_secret, credential.secret_hash)
        ):
            raise InvalidClientError()
        if not await replays.first_use(f"sa:{client_id}", nonce, 300):
            log.warning("identity.service_nonce_replayed", client_id=client_id)
            raise InvalidClientError()
        scopes = [str(scope) for scope in account.scopes]
        issued = await self.authority.issue(
            TokenType.service,
            f"sa:{account.id}",
            {"tid": str(account.tenant_id), "scope": " ".join(scopes), "client_id": client_id},
        )
        return ServiceToken(
            access_token=issued.token,
            expires_in=issued.expires_at - issued.issued_at,
            kid=issued.kid,
            scope=" ".join(scopes),
        )


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidTokenError("subject_gone") from None


def _user_read(user: User, profile: UserProfile | None) -> UserRead:
    return UserRead(
        id=user.id,
        email=user.email,
        display_name=profile.display_name if profile else None,
        email_verified=user.email_verified,
        created_at=user.created_at,
    )


@dataclass(frozen=True)
class NewServiceCredential:
    service_account_id: uuid.UUID
    client_id: str
    client_secret: str


async def create_service_account(
    session: AsyncSession,
    settings: Settings,
    *,
    tenant_id: uuid.UUID,
    name: str,
    scopes: list[str],
) -> NewServiceCredential:
    """Creates an account and its first credential; the secret is shown this once only."""
    account = ServiceAccount(tenant_id=tenant_id, name=name, scopes=scopes, status="active")
    session.add(account)
    await session.flush()
    client_id = "sa_" + secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    pepper = settings.auth.refresh_token_pepper.get_secret_value().encode()
    session.add(
        ServiceAccountCredential(
            service_account_id=account.id,
            client_id=client_id,
            secret_hash=secret_hash(pepper, secret),
        )
    )
    await session.flush()
    log.info("identity.service_account_created", service_account_id=str(account.id))
    return NewServiceCredential(account.id, client_id, secret)


async def purge_login_events(session: AsyncSession, *, older_than: datetime, limit: int) -> int:
    """Retention hook: deletes up to ``limit`` login events created before ``older_than``."""
    doomed = select(UserLoginEvent.id).where(UserLoginEvent.created_at < older_than).limit(limit)
    result = await session.execute(
        delete(UserLoginEvent).where(UserLoginEvent.id.in_(doomed)).returning(UserLoginEvent.id)
    )
    return len(result.all())


async def purge_refresh_tokens(session: AsyncSession, *, now: datetime, limit: int) -> int:
    """Retention hook: deletes up to ``limit`` tokens of families past their absolute life.

    Revoked families are kept until then too: their rows are what detects a reuse."""
    return await IdentityRepository(session).delete_refresh_tokens(
        family_expired_before=now, limit=limit
    )
