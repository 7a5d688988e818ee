"""Sign-up, sign-in, tokens and password reset; a tenant's members and invitations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response

from api.deps import CurrentPrincipal, Identity, Limits, RedisClient, Replays, RequireMember
from api.errors import problem_responses
from api.pages import link_page
from switchboard.auth.errors import ForbiddenError, InvalidTokenError, NoSigningKeyError
from switchboard.auth.principal import Principal
from switchboard.identity.errors import (
    AcceptInvitationRateLimitedError,
    AlreadyMemberError,
    EmailTakenError,
    ForgotPasswordRateLimitedError,
    InvalidClientError,
    InvalidCredentialsError,
    InvalidInvitationError,
    InvalidRefreshTokenError,
    InvalidResetTokenError,
    InvitationNotFoundError,
    LastOwnerError,
    MemberNotFoundError,
    NoSeatFreeError,
    PasswordRequiredError,
    RefreshRateLimitedError,
    RegisterRateLimitedError,
    ResetPasswordRateLimitedError,
)
from switchboard.identity.limits import PublicAction
from switchboard.identity.passwords import WeakPasswordError
from switchboard.identity.schemas import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    ForgotPasswordRequest,
    InvitationAccept,
    InvitationCreate,
    InvitationRead,
    LoginRequest,
    MemberRead,
    MemberUpdate,
    MeRead,
    PasswordForm,
    RefreshRequest,
    RegisterRequest,
    RegisterResult,
    ResetPasswordRequest,
    ServiceToken,
    ServiceTokenRequest,
    TenantMembershipRead,
    TokenPair,
)
from switchboard.identity.service import Client, IdentityService
from switchboard.identity.throttle import AccountLockedError, LoginRateLimitedError
from switchboard.kit.ratelimit import RateLimitedError, RateLimiter
from switchboard.kit.text import SafeStr

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=problem_responses(503))
tenant_router = APIRouter(
    prefix="/api/v1/tenant",
    tags=["tenant"],
    responses=problem_responses(InvalidTokenError, 503),
)

# Roles read from Postgres at each request, not from the token (see RequireMember).
Member = Annotated[Principal, Depends(RequireMember())]
Manager = Annotated[Principal, Depends(RequireMember("owner", "admin"))]

SIGN_IN_REFUSED = problem_responses(
    InvalidCredentialsError,
    AccountLockedError,
    LoginRateLimitedError,
    413,
    NoSigningKeyError,
    503,
)

# A page of members or invitations: `limit` rows at most, the next page's link in `Link`.
PageSize = Annotated[
    int, Query(ge=1, le=PAGE_SIZE_MAX, description=f"Rows per page (at most {PAGE_SIZE_MAX}).")
]
Cursor = Annotated[
    SafeStr | None,
    Query(max_length=200, description='The cursor of the `Link: rel="next"` of the last page.'),
]


def client_of(request: Request) -> Client:
    host = request.client.host if request.client else "unknown"
    return Client(ip=host, user_agent=request.headers.get("user-agent"))


@router.post(
    "/register",
    status_code=201,
    response_model=RegisterResult,
    responses=problem_responses(
        EmailTakenError, 413, 422, WeakPasswordError, RegisterRateLimitedError
    ),
)
async def register(
    body: RegisterRequest, request: Request, identity: Identity, limits: Limits
) -> RegisterResult:
    """Create a tenant and its first user, who becomes its `owner`. Too many sign-ups from
    one address, or from all at once, answer 429 with `Retry-After`."""
    await limits.check(PublicAction.register, ip=client_of(request).ip)
    return await identity.register(body)


@router.post("/login", response_model=TokenPair, responses=SIGN_IN_REFUSED)
async def login(body: LoginRequest, request: Request, identity: Identity) -> TokenPair:
    """Exchange email and password for an access token and a refresh token.

    Wrong email and wrong password answer the same 401. Repeated failures lock the account
    (423 with `Retry-After`); too many failed sign-ins from one address, or from everyone in a
    minute, answer 429 with `Retry-After`.
    """
    return await _sign_in(identity, body.email, body.password, request, body)


@router.post("/token", response_model=TokenPair, responses=SIGN_IN_REFUSED)
async def token(
    form: Annotated[PasswordForm, Form()],
    request: Request,
    identity: Identity,
) -> TokenPair:
    """The same as login, as an OAuth2 password form (the docs' Authorize button uses it)."""
    return await _sign_in(identity, form.username, form.password, request, None)


async def _sign_in(
    identity: IdentityService,
    email: str,
    password: str,
    request: Request,
    body: LoginRequest | None,
) -> TokenPair:
    return await identity.login(
        email, password, client_of(request), body.tenant_id if body else None
    )


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=problem_responses(
        InvalidRefreshTokenError, 413, RefreshRateLimitedError, NoSigningKeyError, 503
    ),
)
async def refresh(
    body: RefreshRequest, request: Request, identity: Identity, limits: Limits
) -> TokenPair:
    """Spend a refresh token for a new pair. Presenting a spent token again revokes its
    whole family (every token descended from the same sign-in). Over the per-address or
    global limit, 429 with `Retry-After`, and the token is not spent."""
    client = client_of(request)
    await limits.check(PublicAction.refresh, ip=client.ip)
    return await identity.refresh(body.refresh_token, client)


@router.post("/logout", status_code=204, responses=problem_responses(413))
async def logout(body: RefreshRequest, identity: Identity) -> Response:
    """Revoke the refresh token's family. Always 204."""
    await identity.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=MeRead, responses=problem_responses(InvalidTokenError))
async def me(principal: CurrentPrincipal, identity: Identity) -> MeRead:
    """The calling user, the tenant of the token and its roles."""
    return await identity.me(principal)


@router.post(
    "/password/forgot",
    status_code=202,
    response_class=Response,
    responses=problem_responses(413, ForgotPasswordRateLimitedError),
)
async def forgot_password(
    body: ForgotPasswordRequest, request: Request, identity: Identity, limits: Limits
) -> Response:
    """Send a password-reset link if the account exists: 202 whether it does or not. Over the
    per-address or global limit, 429 with `Retry-After`, and nothing is sent."""
    await limits.check(PublicAction.forgot, ip=client_of(request).ip)
    await identity.forgot_password(body.email)
    return Response(status_code=202)


@router.post(
    "/password/reset",
    status_code=204,
    responses=problem_responses(
        InvalidResetTokenError, 413, 422, WeakPasswordError, ResetPasswordRateLimitedError
    ),
)
async def reset_password(
    body: ResetPasswordRequest, request: Request, identity: Identity, limits: Limits
) -> Response:
    """Set a new password with a reset link's token; every refresh token of the user is
    revoked. Over the per-address or global limit, 429 with `Retry-After`, and the token is
    not spent."""
    await limits.check(PublicAction.reset, ip=client_of(request).ip)
    await identity.reset_password(body.token, body.new_password)
    return Response(status_code=204)


@router.post(
    "/service-token",
    response_model=ServiceToken,
    responses=problem_responses(InvalidClientError, 413, RateLimitedError, NoSigningKeyError, 503),
)
async def service_token(
    body: ServiceTokenRequest, identity: Identity, redis: RedisClient, replays: Replays
) -> ServiceToken:
    """Client credentials for machine clients: a short-lived `sa+jwt` token with the
    account's scopes. Each request carries a fresh `nonce`; a repeated nonce is refused."""
    return await identity.service_token(
        body.client_id,
        body.client_secret,
        body.nonce,
        limiter=RateLimiter(redis, prefix="auth:ratelimit:service"),
        replays=replays,
    )


@router.get(
    "/tenants",
    response_model=list[TenantMembershipRead],
    responses=problem_responses(InvalidTokenError),
)
async def tenants(principal: CurrentPrincipal, identity: Identity) -> list[TenantMembershipRead]:
    """The tenants the caller belongs to, with its role in each, oldest membership first (the
    one login picks without `tenant_id`)."""
    return await identity.tenants(principal)


@router.post(
    "/invitations/accept",
    response_model=TokenPair,
    responses=problem_responses(
        InvalidInvitationError,
        AlreadyMemberError,
        EmailTakenError,
        413,
        422,
        PasswordRequiredError,
        WeakPasswordError,
        AcceptInvitationRateLimitedError,
        NoSigningKeyError,
        503,
    ),
)
async def accept_invitation(
    body: InvitationAccept, request: Request, identity: Identity, limits: Limits
) -> TokenPair:
    """Join the tenant an invitation's link names and sign in to it. An email without an
    account gets one (`password` required, `display_name` optional); an existing account joins
    on the token alone. A malformed, unknown, used, revoked or expired token answers 401."""
    client = client_of(request)
    await limits.check(PublicAction.accept, ip=client.ip)
    return await identity.accept_invitation(body, client)


@tenant_router.get("/members", response_model=list[MemberRead])
async def members(
    principal: Member,
    identity: Identity,
    request: Request,
    response: Response,
    limit: PageSize = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> list[MemberRead]:
    """The tenant's members, oldest first, `limit` (100, at most 500) at a time; when more
    follow, `Link: <...>; rel="next"` gives the next page's URL. Any member."""
    page = await identity.members(principal, limit=limit, cursor=cursor)
    return link_page(page, request, response)


@tenant_router.patch(
    "/members/{user_id}",
    response_model=MemberRead,
    responses=problem_responses(ForbiddenError, MemberNotFoundError, LastOwnerError, 413),
)
async def change_member_role(
    user_id: uuid.UUID, body: MemberUpdate, principal: Manager, identity: Identity
) -> MemberRead:
    """Change a member's role. Owner or admin; only an owner grants or takes away `owner`; the
    last owner cannot be demoted (409). A lowered member's sessions of this tenant end."""
    return await identity.change_member_role(principal, user_id, body.role)


@tenant_router.delete(
    "/members/{user_id}",
    status_code=204,
    responses=problem_responses(ForbiddenError, MemberNotFoundError, LastOwnerError),
)
async def remove_member(user_id: uuid.UUID, principal: Manager, identity: Identity) -> Response:
    """Remove a member; its sessions of this tenant end at once. Owner or admin; only an owner
    removes an owner; the last owner cannot be removed (409)."""
    await identity.remove_member(principal, user_id)
    return Response(status_code=204)


@tenant_router.post(
    "/invitations",
    status_code=201,
    response_model=InvitationRead,
    responses=problem_responses(ForbiddenError, NoSeatFreeError, AlreadyMemberError, 413),
)
async def invite(body: InvitationCreate, principal: Manager, identity: Identity) -> InvitationRead:
    """Invite an email to join the tenant with a role; the invitee is sent a single-use link.
    Owner or admin; only an owner invites an owner. 409 when no seat is free or the email
    belongs to a member. Inviting an address again replaces its pending invitation."""
    return await identity.invite(principal, body.email, body.role)


@tenant_router.get(
    "/invitations",
    response_model=list[InvitationRead],
    responses=problem_responses(ForbiddenError),
)
async def invitations(
    principal: Manager,
    identity: Identity,
    request: Request,
    response: Response,
    limit: PageSize = PAGE_SIZE_DEFAULT,
    cursor: Cursor = None,
) -> list[InvitationRead]:
    """The tenant's pending invitations (neither accepted, revoked nor expired), oldest first,
    paged as the members are. Owner or admin."""
    page = await identity.invitations(principal, limit=limit, cursor=cursor)
    return link_page(page, request, response)


@tenant_router.delete(
    "/invitations/{invitation_id}",
    status_code=204,
    responses=problem_responses(ForbiddenError, InvitationNotFoundError),
)
async def revoke_invitation(
    invitation_id: uuid.UUID, principal: Manager, identity: Identity
) -> Response:
    """Revoke an invitation not yet accepted; its link stops working and its seat is free.
    Owner or admin."""
    await identity.revoke_invitation(principal, invitation_id)
    return Response(status_code=204)
