"""FastAPI dependencies, exposed as ``Annotated`` aliases for route signatures.

The long-lived objects of the API process are built once in the lifespan (``api.main``) and
kept on ``app.state``; this module is the only reader of ``app.state``, and it assembles the
per-request services from them.

Dependencies are ``async def`` even where they do not await: FastAPI runs plain ``def``
dependencies in a thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis

from switchboard.agents.registry import AgentRegistry
from switchboard.auth.authority import TokenAuthority
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.nonces import ReplayCache
from switchboard.auth.principal import Principal
from switchboard.auth.tokens import TokenType
from switchboard.billing.service import BillingService
from switchboard.conversations.repository import ConversationRepository
from switchboard.conversations.service import ConversationService
from switchboard.identity.limits import PublicLimits
from switchboard.identity.notifier import Notifier
from switchboard.identity.passwords import PasswordHasher
from switchboard.identity.service import IdentityService
from switchboard.identity.throttle import LoginThrottle
from switchboard.kit.jobs import JobSender
from switchboard.kit.resources import Resources
from switchboard.kit.uow import UnitOfWork
from switchboard.mail.notifier import MailNotifier
from switchboard.mail.sealing import MailSealer
from switchboard.runs.admission import Admission
from switchboard.runs.events import EventPublisher
from switchboard.runs.hub import EventHub
from switchboard.runs.repository import RunRepository
from switchboard.runs.service import RunService
from switchboard.runs.stream_slots import StreamSlots
from switchboard.settings import Settings
from switchboard.webhooks.repository import WebhookRepository
from switchboard.webhooks.service import WebhookService
from switchboard.webhooks.signing import SecretBox

# --- process-wide objects, built in the lifespan ----------------------------------------


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def get_job_sender(request: Request) -> JobSender:
    sender: JobSender = request.app.state.job_sender
    return sender


async def get_authority(request: Request) -> TokenAuthority:
    authority: TokenAuthority = request.app.state.authority
    return authority


async def get_replay_cache(request: Request) -> ReplayCache:
    cache: ReplayCache = request.app.state.replay_cache
    return cache


async def get_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


async def get_log_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


async def get_registry(request: Request) -> AgentRegistry:
    registry: AgentRegistry = request.app.state.agents
    return registry


async def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.event_hub
    return hub


async def get_publisher(request: Request) -> EventPublisher:
    publisher: EventPublisher = request.app.state.event_publisher
    return publisher


async def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


async def get_stream_slots(request: Request) -> StreamSlots:
    slots: StreamSlots = request.app.state.stream_slots
    return slots


AppResources = Annotated[Resources, Depends(get_resources)]
Streams = Annotated[StreamSlots, Depends(get_stream_slots)]
Authority = Annotated[TokenAuthority, Depends(get_authority)]
Replays = Annotated[ReplayCache, Depends(get_replay_cache)]
Registry = Annotated[AgentRegistry, Depends(get_registry)]
Hub = Annotated[EventHub, Depends(get_hub)]


async def get_settings(resources: AppResources) -> Settings:
    return resources.settings


async def get_redis(resources: AppResources) -> Redis:
    return resources.redis


AppSettings = Annotated[Settings, Depends(get_settings)]
RedisClient = Annotated[Redis, Depends(get_redis)]

# --- the request's unit of work and the services on it ----------------------------------


async def get_unit_of_work(
    resources: AppResources, sender: Annotated[JobSender, Depends(get_job_sender)]
) -> AsyncIterator[UnitOfWork]:
    # Commits (and sends buffered jobs) when the route returns, before the response is sent,
    # so a failed commit is answered as an error rather than after a 2xx went out.
    async with UnitOfWork(resources.sessionmaker, sender) as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]


async def get_notifier(
    request: Request, uow: UoW, fallback: Annotated[Notifier, Depends(get_log_notifier)]
) -> Notifier:
    """With SMTP configured, messages become mail jobs in this request's job buffer, sent only
    once it commits; without, the process's notifier (the log, in development) tells them."""
    sealer: MailSealer | None = request.app.state.mail_sealer
    if sealer is None:
        return fallback
    return MailNotifier(uow.jobs, sealer)


async def get_identity(
    uow: UoW,
    resources: AppResources,
    authority: Authority,
    hasher: Annotated[PasswordHasher, Depends(get_hasher)],
    notifier: Annotated[Notifier, Depends(get_notifier)],
) -> IdentityService:
    settings = resources.settings
    return IdentityService(
        session=uow.session,
        sessionmaker=uow.sessionmaker,
        settings=settings,
        hasher=hasher,
        throttle=LoginThrottle(resources.redis, settings.identity),
        authority=authority,
        notifier=notifier,
    )


async def get_runs(
    uow: UoW,
    settings: AppSettings,
    resources: AppResources,
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    admission: Annotated[Admission, Depends(get_admission)],
) -> RunService:
    return RunService(
        settings.runs,
        publisher,
        RunRepository(uow.session),
        admission if settings.runs.limits_enabled else None,
        settings.conversations,
        resources.redis,
    )


async def get_conversations(uow: UoW) -> ConversationService:
    return ConversationService(ConversationRepository(uow.session))


async def get_billing(
    uow: UoW, settings: AppSettings, admission: Annotated[Admission, Depends(get_admission)]
) -> BillingService:
    enforced = settings.runs.limits_enabled
    return BillingService(
        uow.session, runs_this_minute=admission.remaining_this_minute if enforced else None
    )


async def get_webhooks(uow: UoW, request: Request, settings: AppSettings) -> WebhookService:
    box: SecretBox = request.app.state.webhook_secret_box
    return WebhookService(WebhookRepository(uow.session), uow.jobs, settings.webhooks, box)


Identity = Annotated[IdentityService, Depends(get_identity)]
Runs = Annotated[RunService, Depends(get_runs)]
Conversations = Annotated[ConversationService, Depends(get_conversations)]
Billing = Annotated[BillingService, Depends(get_billing)]
Webhooks = Annotated[WebhookService, Depends(get_webhooks)]


async def get_public_limits(resources: AppResources) -> PublicLimits:
    return PublicLimits(resources.redis, resources.settings.identity)


# Sign-up, password reset and refresh: per-IP and global limits for callers not signed in.
Limits = Annotated[PublicLimits, Depends(get_public_limits)]

# --- who is calling ---------------------------------------------------------------------

# Declares the bearer scheme in OpenAPI (the "Authorize" button posts to /auth/token); the
# token itself is checked below, so a missing one gets our own problem document.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


async def get_principal(authority: Authority, token: BearerToken) -> Principal:
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


class RequireMember:
    """``Depends(RequireMember("owner", "admin"))``: like ``RequireRole``, but the role is read
    from Postgres now rather than trusted from the token, which lives up to 15 minutes. A
    caller no longer a member gets 401; one whose role is not listed now, 403. With no roles,
    any current member passes. Gives the principal with its current role."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles

    async def __call__(self, principal: CurrentPrincipal, identity: Identity) -> Principal:
        current = await identity.current(principal)
        if self.roles and not current.has_any_role(*self.roles):
            raise ForbiddenError(f"This needs one of the roles: {', '.join(self.roles)}.")
        return current


async def require_operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise ForbiddenError("Platform operators only.")
    return principal


RequireOperator = Annotated[Principal, Depends(require_operator)]


@dataclass(frozen=True)
class StreamOpener:
    """Whose stream is being opened, and the ticket (its ``jti``) that opens it, if any."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    ticket_id: str | None = None


async def check_stream_access(
    run_id: uuid.UUID,
    authority: Authority,
    runs: Runs,
    token: BearerToken,
    ticket: Annotated[str | None, Query(description="The ticket from `stream_url`.")] = None,
) -> StreamOpener:
    """A run's stream opens with its ticket (from `stream_url`), or with the bearer token of
    the user who owns the run. The ticket is checked here, when the stream opens, and never
    again: a stream it opened outlives it."""
    if ticket is not None:
        claims = await authority.verify(ticket, TokenType.stream_ticket)
        if claims.get("run") != str(run_id):
            raise InvalidTokenError("wrong_run")
        try:
            return StreamOpener(
                uuid.UUID(str(claims["tid"])), uuid.UUID(str(claims["sub"])), str(claims["jti"])
            )
        except (KeyError, ValueError):
            raise InvalidTokenError("malformed") from None
    principal = await get_principal(authority, token)
    await runs.check_access(principal, run_id)
    return StreamOpener(principal.tenant_id, principal.subject)


StreamAccess = Annotated[StreamOpener, Depends(check_stream_access)]
