"""Sign-up, sign-in, tokens and password reset."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentPrincipal, Identity, Limits, RedisClient, Replays
from switchboard.identity.limits import PublicAction
from switchboard.identity.schemas import (
    ForgotPasswordRequest,
    LoginRequest,
    MeRead,
    RefreshRequest,
    RegisterRequest,
    RegisterResult,
    ResetPasswordRequest,
    ServiceToken,
    ServiceTokenRequest,
    TokenPair,
)
from switchboard.identity.service import Client, IdentityService
from switchboard.kit.ratelimit import RateLimiter

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Bad credentials or token."}}


def client_of(request: Request) -> Client:
    host = request.client.host if request.client else "unknown"
    return Client(ip=host, user_agent=request.headers.get("user-agent"))


@router.post("/register", status_code=201, response_model=RegisterResult)
async def register(
    body: RegisterRequest, request: Request, identity: Identity, limits: Limits
) -> RegisterResult:
    """Create a tenant and its first user, who becomes its `owner`. Too many sign-ups from
    one address, or from all at once, answer 429 with `Retry-After`."""
    await limits.check(PublicAction.register, ip=client_of(request).ip)
    return await identity.register(body)


@router.post("/login", response_model=TokenPair, responses=UNAUTHORIZED)
async def login(body: LoginRequest, request: Request, identity: Identity) -> TokenPair:
    """Exchange email and password for an access token and a refresh token.

    Wrong email and wrong password answer the same 401. Repeated failures lock the account
    (423 with `Retry-After`); too many attempts from one address answer 429.
    """
    return await _sign_in(identity, body.email, body.password, request, body)


@router.post("/token", response_model=TokenPair, responses=UNAUTHORIZED)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
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


@router.post("/refresh", response_model=TokenPair, responses=UNAUTHORIZED)
async def refresh(
    body: RefreshRequest, request: Request, identity: Identity, limits: Limits
) -> TokenPair:
    """Spend a refresh token for a new pair. Presenting a spent token again revokes its
    whole family (every token descended from the same sign-in). Over the per-address or
    global limit, 429 with `Retry-After`, and the token is not spent."""
    client = client_of(request)
    await limits.check(PublicAction.refresh, ip=client.ip)
    return await identity.refresh(body.refresh_token, client)


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, identity: Identity) -> Response:
    """Revoke the refresh token's family. Always 204."""
    await identity.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=MeRead, responses=UNAUTHORIZED)
async def me(principal: CurrentPrincipal, identity: Identity) -> MeRead:
    """The calling user, the tenant of the token and its roles."""
    return await identity.me(principal)


@router.post("/password/forgot", status_code=202)
async def forgot_password(
    body: ForgotPasswordRequest, request: Request, identity: Identity, limits: Limits
) -> Response:
    """Send a password-reset link if the account exists: 202 whether it does or not. Over the
    per-address or global limit, 429 with `Retry-After`, and nothing is sent."""
    await limits.check(PublicAction.forgot, ip=client_of(request).ip)
    await identity.forgot_password(body.email)
    return Response(status_code=202)


@router.post("/password/reset", status_code=204)
async def reset_password(
    body: ResetPasswordRequest, request: Request, identity: Identity, limits: Limits
) -> Response:
    """Set a new password with a reset link's token; every refresh token of the user is
    revoked. Over the per-address or global limit, 429 with `Retry-After`, and the token is
    not spent."""
    await limits.check(PublicAction.reset, ip=client_of(request).ip)
    await identity.reset_password(body.token, body.new_password)
    return Response(status_code=204)


@router.post("/service-token", response_model=ServiceToken, responses=UNAUTHORIZED)
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
