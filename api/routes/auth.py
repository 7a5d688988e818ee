"""Signing keys: the public key set for verifiers, and their rotation for operators."""

from __future__ import annotations

from datetime import UTC
from email.utils import format_datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import Counter

from api.deps import AppSettings, Authority, RequireOperator, UoW
from api.errors import problem_responses
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.jobs import KEY_ACTIONS
from switchboard.auth.schemas import KeyRotationRequest, KeySetRead, TaskAccepted
from switchboard.auth.service import list_keys

router = APIRouter(responses=problem_responses(503))

# The example of the OpenAPI document (/docs, /redoc): the active key and the next one.
_KEY_SET_EXAMPLE = {
    "keys": [
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "cmz8EpVDdG2Cj6JcxlClD1Le1q1I8IvKvMfoAhhZabg",
            "kid": "7UXOdHeYGF-vMWQKQn9pNabG2fNs1Ho31AViWLgMh7U",
            "use": "sig",
            "alg": "EdDSA",
        },
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "59Z63H_3QFiiWxmapSqewUrtcCkyRPkmD05aGX8AxJY",
            "kid": "YE_ciUzY0vesiC7p7Kn97yMmY8_gbM9n9n7srCRHZDk",
            "use": "sig",
            "alg": "EdDSA",
        },
    ]
}

JWKS_REQUESTS = Counter("jwks_requests_total", "JWKS documents requested.")
JWKS_NOT_MODIFIED = Counter("jwks_not_modified_total", "JWKS requests answered 304.")


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


@router.get(
    "/.well-known/jwks.json",
    responses={
        200: {
            "description": "The key set.",
            "content": {"application/json": {"example": _KEY_SET_EXAMPLE}},
        },
        304: {"description": "Not modified."},
    },
    tags=["auth"],
)
@router.get("/api/v1/auth/jwks", include_in_schema=False)
async def jwks(request: Request, authority: Authority, settings: AppSettings) -> Response:
    """Public keys that verify our tokens: the active key, the next one, and retired keys
    while tokens they signed can still be valid.

    Cache it for `Cache-Control: max-age` and revalidate with `If-None-Match`; a `kid` you do
    not know means the set changed, so fetch it again (at most once per few seconds).
    """
    JWKS_REQUESTS.inc()
    document = await authority.jwks()
    headers = {
        "Cache-Control": f"public, max-age={settings.auth.jwks_max_age_seconds}",
        "ETag": document.etag,
    }
    if document.last_modified is not None:
        headers["Last-Modified"] = format_datetime(
            document.last_modified.astimezone(UTC), usegmt=True
        )
    if _matches(request.headers.get("if-none-match"), document.etag):
        JWKS_NOT_MODIFIED.inc()
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)


@router.get(
    "/api/v1/admin/keys",
    response_model=KeySetRead,
    responses=problem_responses(InvalidTokenError, ForbiddenError),
    tags=["admin"],
)
async def keys(_: RequireOperator, uow: UoW) -> KeySetRead:
    """Every signing key with its state and timestamps (no key material). Operators only."""
    return KeySetRead(keys=await list_keys(uow.session))


@router.post(
    "/api/v1/admin/keys/rotate",
    status_code=202,
    response_model=TaskAccepted,
    responses=problem_responses(InvalidTokenError, ForbiddenError, 413),
    tags=["admin"],
)
async def rotate(
    _: RequireOperator, uow: UoW, request: KeyRotationRequest | None = None
) -> TaskAccepted:
    """Enqueues `auth.keys.rotate` (default) or `auth.keys.cutover` on the maintenance queue.

    Follow the task in Flower by its id. A cutover refused because the next key has not been
    published long enough is logged with the time it may sign from.
    """
    action = request.action if request is not None else "rotate"
    return TaskAccepted(task_id=uow.jobs.enqueue(KEY_ACTIONS[action]))
