"""Service accounts: machine clients that trade a client id, secret and nonce for a token."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.tokens import TokenType
from switchboard.identity.errors import InvalidClientError
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import ServiceToken
from switchboard.identity.secrets import secret_hash, secret_matches, token_pepper
from switchboard.kit.ratelimit import RateLimiter
from switchboard.settings import Settings

log = structlog.get_logger("switchboard.identity")


@dataclass
class ServiceAccountService:
    repo: IdentityRepository
    settings: Settings
    authority: TokenAuthority

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
            or not secret_matches(
                token_pepper(self.settings.auth), client_secret, credential.secret_hash
            )
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
    repo = IdentityRepository(session)
    account = repo.add_service_account(tenant_id, name, scopes)
    await repo.flush()
    client_id = "sa_" + secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    repo.add_credential(account.id, client_id, secret_hash(token_pepper(settings.auth), secret))
    await repo.flush()
    log.info("identity.service_account_created", service_account_id=str(account.id))
    return NewServiceCredential(account.id, client_id, secret)
