"""FastAPI dependencies, exposed as ``Annotated`` aliases for route signatures.

They are ``async def`` even where they do not await: FastAPI runs plain ``def`` dependencies
in a thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.authority import TokenAuthority
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.principal import Principal
from switchboard.auth.tokens import TokenType
from switchboard.kit.jobs import JobSender
from switchboard.kit.resources import Resources
from switchboard.kit.uow import UnitOfWork
from switchboard.settings import Settings


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def get_job_sender(request: Request) -> JobSender:
    sender: JobSender = request.app.state.job_sender
    return sender


AppResources = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: AppResources) -> Settings:
    return resources.settings


async def get_redis(resources: AppResources) -> Redis:
    return resources.redis


async def get_unit_of_work(
    resources: AppResources, sender: Annotated[JobSender, Depends(get_job_sender)]
) -> AsyncIterator[UnitOfWork]:
    # Commits (and sends buffered jobs) when the route returns, before the response is sent,
    # so a failed commit is answered as an error rather than after a 2xx went out.
    async with UnitOfWork(resources.sessionmaker, sender) as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]


async def get_session(uow: UoW) -> AsyncSession:
    return uow.session


AppSettings = Annotated[Settings, Depends(get_settings)]
RedisClient = Annotated[Redis, Depends(get_redis)]
DbSession = Annotated[AsyncSession, Depends(get_session)]


async def get_authority(request: Request) -> TokenAuthority:
    authority: TokenAuthority = request.app.state.authority
    return authority


Authority = Annotated[TokenAuthority, Depends(get_authority)]


async def get_replay_cache(request: Request) -> ReplayCache:
    cache: ReplayCache = request.app.state.replay_cache
    return cache


Replays = Annotated[ReplayCache, Depends(get_replay_cache)]

# Declares the bearer scheme in OpenAPI (the "Authorize" button posts to /auth/token); the
# token itself is checked below, so a missing one gets our own problem document.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_principal(
    authority: Authority, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    if not token:
        raise InvalidTokenError("missing")
    claims = await authority.verify(token, TokenType.access)
    return Principal.from_access_claims(claims)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RequireRole:
    """``Depends(RequireRole("owner", "admin"))``: the principal holds one of these roles."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.has_any_role(*self.roles):
            raise ForbiddenError(f"This needs one of the roles: {', '.join(self.roles)}.")
        return principal


async def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise ForbiddenError("Platform operators only.")
    return principal


RequireOperator = Annotated[Principal, Depends(require_operator)]
