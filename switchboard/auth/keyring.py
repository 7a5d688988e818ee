"""Each process's view of the key set, reloaded from Postgres every few seconds.

A snapshot holds what signing and verification need on the hot path: the active private key,
every published public key by kid, and the JWKS document rendered once per key-set change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import Gauge

from switchboard.auth.keys import public_jwk, public_key_from_x
from switchboard.auth.keystore import KeyStore
from switchboard.auth.repository import AuthRepository
from switchboard.auth.settings import AuthSettings
from switchboard.kit.db import SessionMaker
from switchboard.models import KeyState

log = structlog.get_logger("switchboard.auth")

KEY_CREATED = Gauge(
    "auth_signing_key_created_timestamp_seconds",
    "When the key now in each state was created (published), as seen by this process.",
    ["state"],
    multiprocess_mode="max",
)
KEY_ACTIVATED = Gauge(
    "auth_signing_key_activated_timestamp_seconds",
    "When the active signing key started signing; alert when it is older than its period.",
    multiprocess_mode="max",
)

PUBLISHED_STATES = (KeyState.next, KeyState.active, KeyState.retired)
# A token naming an unknown kid may reload the key set at most this often.
UNKNOWN_KID_RELOAD_SECONDS = 5.0


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    state: KeyState
    x: str
    store_version: int
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    removed_at: datetime | None

    @property
    def changed_at(self) -> datetime:
        stamps = (self.created_at, self.activated_at, self.retired_at, self.removed_at)
        return max(stamp for stamp in stamps if stamp is not None)


@dataclass(frozen=True)
class JwksDocument:
    body: bytes
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True)
class KeySnapshot:
    records: tuple[KeyRecord, ...]
    signing_kid: str | None
    signing_key: Ed25519PrivateKey | None
    verification_keys: Mapping[str, Ed25519PublicKey]
    jwks: JwksDocument
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        return tuple((record.kid, record.state.value) for record in self.records)


def render_jwks(records: Sequence[KeyRecord], etag_salt: str) -> JwksDocument:
    published = [record for record in records if record.state in PUBLISHED_STATES]
    # Active first, then next, then retired: verifiers that try keys in order find the
    # likeliest one first.
    order = {KeyState.active: 0, KeyState.next: 1, KeyState.retired: 2}
    published.sort(key=lambda record: (order[record.state], record.kid))
    body = json.dumps(
        {"keys": [public_jwk(record.kid, record.x) for record in published]},
        separators=(",", ":"),
    ).encode()
    etag = '"' + hashlib.sha256(etag_salt.encode() + b"\0" + body).hexdigest()[:32] + '"'
    last_modified = max((record.changed_at for record in records), default=None)
    return JwksDocument(body=body, etag=etag, last_modified=last_modified)


async def load_records(sessionmaker: SessionMaker) -> tuple[KeyRecord, ...]:
    async with sessionmaker() as session:
        rows = await AuthRepository(session).keys()
    return tuple(
        KeyRecord(
            kid=row.kid,
            state=KeyState(row.state),
            x=row.public_key,
            store_version=row.store_version,
            created_at=row.created_at,
            activated_at=row.activated_at,
            retired_at=row.retired_at,
            removed_at=row.removed_at,
        )
        for row in rows
    )


class KeyRing:
    def __init__(self, sessionmaker: SessionMaker, store: KeyStore, settings: AuthSettings) -> None:
        self._sessionmaker = sessionmaker
        self._store = store
        self._settings = settings
        self._snapshot: KeySnapshot | None = None
        self._private_keys: dict[str, Ed25519PrivateKey] = {}
        self._lock = asyncio.Lock()
        self._last_unknown_kid_reload = 0.0

    async def snapshot(self) -> KeySnapshot:
        current = self._snapshot
        if current is not None and (
            time.monotonic() - current.loaded_at < self._settings.keyring_refresh_seconds
        ):
            return current
        return await self.reload()

    async def reload_for_unknown_kid(self) -> KeySnapshot | None:
        """Reloads once per few seconds at most; None when a reload was done just now."""
        now = time.monotonic()
        if now - self._last_unknown_kid_reload < UNKNOWN_KID_RELOAD_SECONDS:
            return None
        self._last_unknown_kid_reload = now
        return await self.reload()

    async def reload(self) -> KeySnapshot:
        requested_at = time.monotonic()
        async with self._lock:
            current = self._snapshot
            if current is not None and current.loaded_at >= requested_at:
                # Loaded by another request while this one waited for the lock.
                return current
            records = await load_records(self._sessionmaker)
            current = self._snapshot
            fingerprint = tuple((record.kid, record.state.value) for record in records)
            if current is not None and current.fingerprint == fingerprint:
                self._snapshot = KeySnapshot(
                    records=current.records,
                    signing_kid=current.signing_kid,
                    signing_key=current.signing_key,
                    verification_keys=current.verification_keys,
                    jwks=current.jwks,
                )
                return self._snapshot
            self._snapshot = await self._build(records)
            _export_timestamps(records)
            log.info(
                "auth.keyring_loaded",
                signing_kid=self._snapshot.signing_kid,
                published=len(self._snapshot.verification_keys),
            )
            return self._snapshot

    async def _build(self, records: tuple[KeyRecord, ...]) -> KeySnapshot:
        active = next((record for record in records if record.state == KeyState.active), None)
        signing_key = None
        if active is not None:
            signing_key = self._private_keys.get(active.kid)
            if signing_key is None:
                raw = await self._store.get(active.kid, version=active.store_version)
                signing_key = Ed25519PrivateKey.from_private_bytes(raw)
                self._private_keys = {active.kid: signing_key}
        verification = {
            record.kid: public_key_from_x(record.x)
            for record in records
            if record.state in PUBLISHED_STATES
        }
        return KeySnapshot(
            records=records,
            signing_kid=active.kid if active else None,
            signing_key=signing_key,
            verification_keys=verification,
            jwks=render_jwks(records, self._settings.jwks_etag_salt),
        )


def _export_timestamps(records: Sequence[KeyRecord]) -> None:
    for state in PUBLISHED_STATES:
        newest = max(
            (record.created_at for record in records if record.state == state), default=None
        )
        KEY_CREATED.labels(state.value).set(newest.timestamp() if newest else 0)
    active = next((record for record in records if record.state == KeyState.active), None)
    activated = active.activated_at if active else None
    KEY_ACTIVATED.set(activated.timestamp() if activated else 0)
