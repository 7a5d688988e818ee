"""EdDSA JWTs: signing with the active key, strict verification against published keys."""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import structlog
from prometheus_client import Counter, Histogram

from switchboard.auth.errors import InvalidTokenError, NoSigningKeyError, UnknownKeyError
from switchboard.auth.keyring import KeySnapshot
from switchboard.auth.nonces import MAX_TTL_SECONDS, ReplayCache
from switchboard.auth.settings import AuthSettings
from switchboard.kit.encoding import b64url_decode

log = structlog.get_logger("switchboard.auth")

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti")
# Longer than any token we issue by a wide margin; bounds the work an attacker can ask for.
MAX_TOKEN_BYTES = 8192
# Tokens verified lately, by their exact text. A client sends the same access token with every
# request until it expires, and checking its signature again costs more than the rest of the
# request's authentication; a hit still needs the token's key in the current key set.
RECENT_TOKENS = 4096

JWT_SIGN = Counter("jwt_sign_total", "Tokens signed, by type.", ["typ"])
JWT_VERIFY = Counter(
    "jwt_verify_total", "Token verifications, by type and result.", ["typ", "result"]
)
JWT_VERIFY_SECONDS = Histogram(
    "jwt_verify_duration_seconds",
    "Time to verify one token.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
)


class TokenType(enum.StrEnum):
    """The JOSE ``typ`` of each kind of token; one kind is never accepted as another."""

    access = "at+jwt"
    service = "sa+jwt"
    stream_ticket = "stream-ticket+jwt"


@dataclass(frozen=True)
class _Verified:
    kid: str
    claims: dict[str, Any]
    usable_until: float  # exp plus the leeway, as PyJWT allows


@dataclass(frozen=True)
class IssuedToken:
    token: str
    kid: str
    jti: str
    issued_at: int
    expires_at: int
    typ: TokenType


class TokenSigner:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    def sign(
        self,
        snapshot: KeySnapshot,
        typ: TokenType,
        subject: str,
        ttl_seconds: int,
        claims: Mapping[str, Any] | None = None,
        *,
        now: float | None = None,
    ) -> IssuedToken:
        if snapshot.signing_key is None or snapshot.signing_kid is None:
            raise NoSigningKeyError("No signing key is active yet; run the key rotation task.")
        issued_at = int(now if now is not None else time.time())
        jti = uuid.uuid4().hex
        payload = {
            **(claims or {}),
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": subject,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + ttl_seconds,
            "jti": jti,
        }
        token = jwt.encode(
            payload,
            snapshot.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": snapshot.signing_kid, "typ": typ.value},
        )
        JWT_SIGN.labels(typ.value).inc()
        return IssuedToken(
            token, snapshot.signing_kid, jti, issued_at, issued_at + ttl_seconds, typ
        )


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._decoder = jwt.PyJWT()
        self._options: Any = {"require": list(REQUIRED_CLAIMS), "strict_aud": True}
        # Resolved once: a labelled child lookup takes a lock, which the hot path can skip.
        self._verified = {typ: JWT_VERIFY.labels(typ.value, "ok") for typ in TokenType}
        self._recent: OrderedDict[tuple[TokenType, str], _Verified] = OrderedDict()

    def verify(self, token: str, snapshot: KeySnapshot, typ: TokenType) -> dict[str, Any]:
        """The verified claims, or InvalidTokenError (UnknownKeyError for an unknown kid)."""
        started = time.perf_counter()
        try:
            claims = self._recall(token, snapshot, typ) or self._verify_and_keep(
                token, snapshot, typ
            )
        except InvalidTokenError as exc:
            JWT_VERIFY.labels(typ.value, exc.reason).inc()
            log.info("auth.token_rejected", typ=typ.value, reason=exc.reason)
            raise
        finally:
            JWT_VERIFY_SECONDS.observe(time.perf_counter() - started)
        self._verified[typ].inc()
        return claims

    def _recall(self, token: str, snapshot: KeySnapshot, typ: TokenType) -> dict[str, Any] | None:
        """The claims of a token verified before, while it and its key remain valid."""
        verified = self._recent.get((typ, token))
        if verified is None:
            return None
        if time.time() >= verified.usable_until or verified.kid not in snapshot.verification_keys:
            del self._recent[(typ, token)]
            return None
        self._recent.move_to_end((typ, token))
        return dict(verified.claims)

    def _verify_and_keep(self, token: str, snapshot: KeySnapshot, typ: TokenType) -> dict[str, Any]:
        kid, claims = self._verify(token, snapshot, typ)
        usable_until = int(claims["exp"]) + self._settings.leeway_seconds
        self._recent[(typ, token)] = _Verified(kid, dict(claims), usable_until)
        if len(self._recent) > RECENT_TOKENS:
            self._recent.popitem(last=False)
        return claims

    def _verify(
        self, token: str, snapshot: KeySnapshot, typ: TokenType
    ) -> tuple[str, dict[str, Any]]:
        """The key id that verified the token, and its claims."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidTokenError("too_long")
        # A quick look at the header picks the key; PyJWT then parses the whole token strictly
        # and the checks below run on the header it verified.
        kid = _peek_kid(token)
        if kid is None:
            raise InvalidTokenError("kid")
        key = snapshot.verification_keys.get(kid)
        if key is None:
            raise UnknownKeyError("unknown_kid")
        try:
            decoded = self._decoder.decode_complete(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidTokenError("not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("signature") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidTokenError("algorithm") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed") from None
        header: dict[str, Any] = decoded["header"]
        if header.get("kid") != kid:
            raise InvalidTokenError("kid")
        token_typ = header.get("typ")
        if not isinstance(token_typ, str) or token_typ.lower() != typ.value:
            raise InvalidTokenError("type")
        # We understand no critical extension (b64 included). jku, x5u, jwk and x5c are
        # ignored: keys come only from our own key set, selected by kid.
        if "crit" in header or "b64" in header:
            raise InvalidTokenError("crit")
        claims: dict[str, Any] = decoded["payload"]
        if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
            raise InvalidTokenError("claims")
        return kid, claims


def _peek_kid(token: str) -> str | None:
    """The ``kid`` of the header, or None. Only selects a key; PyJWT validates the rest."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(b64url_decode(segment))
    except (ValueError, TypeError):
        raise InvalidTokenError("malformed") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed")
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


async def spend_single_use(cache: ReplayCache, claims: Mapping[str, Any], now: float) -> None:
    """Accepts a verified single-use token once: its ``jti`` goes into the replay cache.

    Only tokens living at most the replay cache's window can be single-use, or a replay after
    the cache forgot the jti would pass.
    """
    lifetime = int(claims["exp"]) - int(claims["iat"])
    if lifetime > MAX_TTL_SECONDS:
        raise InvalidTokenError("single_use_too_long")
    remaining = int(claims["exp"]) - int(now) + 1
    if not await cache.first_use("jti", str(claims["jti"]), remaining):
        raise InvalidTokenError("replayed")
