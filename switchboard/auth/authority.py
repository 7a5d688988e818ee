"""The token authority of one process: its key ring, signer and verifier together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchboard.auth.errors import UnknownKeyError
from switchboard.auth.keyring import JwksDocument, KeyRing
from switchboard.auth.settings import AuthSettings
from switchboard.auth.tokens import IssuedToken, TokenSigner, TokenType, TokenVerifier


class TokenAuthority:
    def __init__(self, keyring: KeyRing, settings: AuthSettings) -> None:
        self.keyring = keyring
        self._settings = settings
        self._signer = TokenSigner(settings)
        self._verifier = TokenVerifier(settings)

    def default_ttl(self, typ: TokenType) -> int:
        return {
            TokenType.access: self._settings.access_token_ttl_seconds,
            TokenType.service: self._settings.service_token_ttl_seconds,
            TokenType.stream_ticket: self._settings.stream_ticket_ttl_seconds,
        }[typ]

    async def issue(
        self,
        typ: TokenType,
        subject: str,
        claims: Mapping[str, Any] | None = None,
        *,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        snapshot = await self.keyring.snapshot()
        ttl = ttl_seconds if ttl_seconds is not None else self.default_ttl(typ)
        return self._signer.sign(snapshot, typ, subject, ttl, claims)

    async def verify(self, token: str, typ: TokenType) -> dict[str, Any]:
        snapshot = await self.keyring.snapshot()
        try:
            return self._verifier.verify(token, snapshot, typ)
        except UnknownKeyError:
            # Another process may have just rotated: look once more before refusing.
            reloaded = await self.keyring.reload_for_unknown_kid()
            if reloaded is None:
                raise
            return self._verifier.verify(token, reloaded, typ)

    async def jwks(self) -> JwksDocument:
        return (await self.keyring.snapshot()).jwks
