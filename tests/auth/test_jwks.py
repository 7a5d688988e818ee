from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from fastapi import FastAPI
from httpx import AsyncClient

from switchboard.auth.keyring import KeyRecord, KeySnapshot, render_jwks
from switchboard.auth.keys import generate_key, thumbprint
from switchboard.models import KeyState
from switchboard.settings import Settings


async def test_jwks_lists_published_public_keys_with_cache_headers(
    app: FastAPI, client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    response = await client.get("/.well-known/jwks.json")
    current = await app.state.authority.keyring.reload()

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert {key["kid"] for key in keys} == set(current.verification_keys)
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (key["kty"], key["crv"], key["use"], key["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert key["kid"] == thumbprint(key["x"])
    assert keys[0]["kid"] == current.signing_kid
    max_age = settings.auth.jwks_max_age_seconds
    assert response.headers["cache-control"] == f"public, max-age={max_age}"
    assert response.headers["etag"].startswith('"')  # strong: no W/ prefix
    assert parsedate_to_datetime(response.headers["last-modified"]) <= datetime.now(UTC)


async def test_alias_serves_the_same_document(
    client: AsyncClient, committed_keys: KeySnapshot
) -> None:
    canonical = await client.get("/.well-known/jwks.json")
    alias = await client.get("/api/v1/auth/jwks")
    assert alias.content == canonical.content
    assert alias.headers["etag"] == canonical.headers["etag"]


async def test_if_none_match_answers_304_without_body(
    client: AsyncClient, committed_keys: KeySnapshot
) -> None:
    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]

    same = await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    listed = await client.get("/.well-known/jwks.json", headers={"If-None-Match": f'"x", {etag}'})
    other = await client.get("/.well-known/jwks.json", headers={"If-None-Match": '"stale"'})

    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == etag
    assert listed.status_code == 304
    assert other.status_code == 200


def _record(state: KeyState, created: datetime) -> KeyRecord:
    key = generate_key()
    return KeyRecord(key.kid, state, key.x, 1, created, None, None, None)


def test_document_and_etag_change_with_the_key_set_only() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    active, nxt = _record(KeyState.active, t), _record(KeyState.next, t)
    removed = _record(KeyState.removed, t)

    first = render_jwks([active, nxt], "salt")
    again = render_jwks([nxt, active], "salt")
    with_removed = render_jwks([active, nxt, removed], "salt")
    resalted = render_jwks([active, nxt], "pepper")

    assert first == again
    assert with_removed.body == first.body
    assert resalted.etag != first.etag
    assert render_jwks([active], "salt").etag != first.etag


async def test_auth_metrics_are_exposed(client: AsyncClient, committed_keys: KeySnapshot) -> None:
    await client.get("/.well-known/jwks.json")
    await client.get("/api/v1/admin/keys", headers={"Authorization": "Bearer nope"})

    text = (await client.get("/metrics")).text

    assert "jwks_requests_total" in text
    assert 'jwt_verify_total{result="malformed",typ="at+jwt"}' in text
    assert "jwt_verify_duration_seconds_bucket" in text
    activated = next(
        line
        for line in text.splitlines()
        if line.startswith("auth_signing_key_activated_timestamp_seconds ")
    )
    assert float(activated.split()[1]) > 0
