"""Tokens verified once are recognised again without their signature check, but never past
their expiry, never after their key left the key set, and never as another type."""

from __future__ import annotations

import dataclasses
import time

import pytest

from switchboard.auth import tokens
from switchboard.auth.errors import InvalidTokenError, UnknownKeyError
from switchboard.auth.keyring import KeySnapshot
from switchboard.auth.tokens import TokenSigner, TokenType, TokenVerifier
from switchboard.settings import Settings


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings.auth)


def _signature_checks(monkeypatch: pytest.MonkeyPatch, verifier: TokenVerifier) -> list[str]:
    """Records each full verification the verifier runs."""
    checks: list[str] = []
    full = verifier._verify

    def counted(token: str, snapshot: KeySnapshot, typ: TokenType) -> dict[str, object]:
        checks.append(token)
        return full(token, snapshot, typ)

    monkeypatch.setattr(verifier, "_verify", counted)
    return checks


async def test_a_token_seen_before_skips_the_signature_check(
    committed_keys: KeySnapshot,
    settings: Settings,
    verifier: TokenVerifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = _signature_checks(monkeypatch, verifier)
    issued = TokenSigner(settings.auth).sign(committed_keys, TokenType.access, "u1", 300)

    first = verifier.verify(issued.token, committed_keys, TokenType.access)
    first["sub"] = "someone else"  # the caller's copy, not the remembered claims
    second = verifier.verify(issued.token, committed_keys, TokenType.access)

    assert checks == [issued.token]
    assert second["sub"] == "u1"
    assert second["jti"] == issued.jti
    with pytest.raises(InvalidTokenError) as refused:
        verifier.verify(issued.token, committed_keys, TokenType.stream_ticket)
    assert refused.value.reason == "type"


async def test_a_remembered_token_still_expires(
    committed_keys: KeySnapshot, settings: Settings
) -> None:
    auth = settings.auth.model_copy(update={"leeway_seconds": 0})
    verifier = TokenVerifier(auth)
    issued = TokenSigner(auth).sign(committed_keys, TokenType.access, "u1", 1)
    verifier.verify(issued.token, committed_keys, TokenType.access)

    time.sleep(max(0.0, issued.expires_at - time.time()) + 0.05)
    with pytest.raises(InvalidTokenError) as refused:
        verifier.verify(issued.token, committed_keys, TokenType.access)
    assert refused.value.reason == "expired"


async def test_a_remembered_token_dies_with_its_key(
    committed_keys: KeySnapshot, settings: Settings, verifier: TokenVerifier
) -> None:
    issued = TokenSigner(settings.auth).sign(committed_keys, TokenType.access, "u1", 300)
    verifier.verify(issued.token, committed_keys, TokenType.access)
    without = {
        kid: key for kid, key in committed_keys.verification_keys.items() if kid != issued.kid
    }
    revoked = dataclasses.replace(committed_keys, verification_keys=without)

    with pytest.raises(UnknownKeyError):
        verifier.verify(issued.token, revoked, TokenType.access)


async def test_the_memory_is_bounded(
    committed_keys: KeySnapshot,
    settings: Settings,
    verifier: TokenVerifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "RECENT_TOKENS", 2)
    checks = _signature_checks(monkeypatch, verifier)
    signer = TokenSigner(settings.auth)
    oldest, *newer = (
        signer.sign(committed_keys, TokenType.access, f"u{n}", 300).token for n in range(3)
    )
    for token in (oldest, *newer, *newer):
        verifier.verify(token, committed_keys, TokenType.access)
    assert checks == [oldest, *newer]

    verifier.verify(oldest, committed_keys, TokenType.access)  # forgotten: checked again
    assert checks == [oldest, *newer, oldest]
