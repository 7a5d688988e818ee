"""Signing keys for tests: a committed key set for the app, and token forging helpers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.auth import service
from switchboard.auth.keyring import KeyRing, KeySnapshot
from switchboard.auth.keystore import FileKeyStore, KeyStore, create_key_store
from switchboard.auth.tokens import TokenType
from switchboard.kit.db import create_sessionmaker
from switchboard.kit.encoding import b64url_encode as b64url
from switchboard.settings import Settings


@pytest.fixture(scope="session")
async def committed_keys(engine: AsyncEngine, settings: Settings) -> KeySnapshot:
    """An active and a next key, committed, so the app's own key ring can load them."""
    sessionmaker = create_sessionmaker(engine)
    store = create_key_store(settings.auth)
    async with sessionmaker() as session, session.begin():
        await service.rotate(session, store, settings.auth, datetime.now(UTC))
    return await KeyRing(sessionmaker, store, settings.auth).reload()


@pytest.fixture
def key_store(tmp_path: Path) -> KeyStore:
    return FileKeyStore(tmp_path / "keys", b"k" * 32)


def claims_for(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.auth.issuer,
        "aud": settings.auth.audience,
        "sub": "00000000-0000-4000-8000-000000000001",
        "tid": "00000000-0000-4000-8000-000000000002",
        "roles": ["operator"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "jti-1",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not _MISSING}


_MISSING = object()
MISSING: Any = _MISSING


def forge(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: Ed25519PrivateKey | None,
    *,
    signature: bytes | None = None,
) -> str:
    """A compact JWS with exactly this header: what an attacker can send."""
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    if signature is None:
        signature = key.sign(signing_input.encode()) if key is not None else b""
    return signing_input + "." + b64url(signature)


def access_header(kid: str, **overrides: Any) -> dict[str, Any]:
    header = {"alg": "EdDSA", "typ": TokenType.access.value, "kid": kid}
    header.update(overrides)
    return {key: value for key, value in header.items() if value is not _MISSING}


def bearer(
    keys: KeySnapshot,
    settings: Settings,
    tenant_id: uuid.UUID,
    role: str,
    *,
    subject: uuid.UUID | None = None,
) -> dict[str, str]:
    """The Authorization header of a member of the tenant with this role."""
    assert keys.signing_kid is not None
    token = forge(
        access_header(keys.signing_kid),
        claims_for(
            settings,
            sub=str(subject or uuid.uuid4()),
            tid=str(tenant_id),
            roles=[role],
            jti=uuid.uuid4().hex,
        ),
        keys.signing_key,
    )
    return {"Authorization": f"Bearer {token}"}
