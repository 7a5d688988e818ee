"""The signing-key lifecycle: next -> active -> retired -> removed.

Timings (all from settings):
- a ``next`` key is published in the JWKS ``jwks_max_age + publish_margin`` before it may
  sign, so every verifier that caches our JWKS knows it before it sees a token from it;
- the ``active`` key signs for ``key_signing_days``; then rotation promotes ``next`` (cutover);
- a ``retired`` key verifies for ``dual_signing_overlap_minutes`` after it stopped signing
  (settings make that cover the longest token life), then its private half is deleted and it
  leaves the JWKS.

Every transition runs under one transaction-scoped advisory lock, and partial unique indexes
allow one ``active`` and one ``next`` key at most, so concurrent rotations act once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.errors import CutoverRefusedError
from switchboard.auth.keys import generate_key
from switchboard.auth.keystore import KeyStore
from switchboard.auth.repository import AuthRepository
from switchboard.auth.schemas import SigningKeyRead
from switchboard.auth.settings import AuthSettings
from switchboard.models import KeyState, SigningKey

log = structlog.get_logger("switchboard.auth")


@dataclass
class RotationReport:
    actions: list[str] = field(default_factory=list)

    def add(self, action: str, kid: str) -> None:
        self.actions.append(f"{action} {kid}")


def may_sign_from(key: SigningKey, settings: AuthSettings) -> datetime:
    wait = settings.jwks_max_age_seconds + settings.publish_margin_seconds
    return key.created_at + timedelta(seconds=wait)


def removable_from(key: SigningKey, settings: AuthSettings) -> datetime:
    assert key.retired_at is not None
    return key.retired_at + timedelta(minutes=settings.dual_signing_overlap_minutes)


async def _keys(repo: AuthRepository) -> dict[KeyState, list[SigningKey]]:
    grouped: dict[KeyState, list[SigningKey]] = {state: [] for state in KeyState}
    for row in await repo.keys():
        grouped[KeyState(row.state)].append(row)
    return grouped


async def _create(
    repo: AuthRepository, store: KeyStore, state: KeyState, now: datetime
) -> SigningKey:
    generated = generate_key()
    version = await store.put(generated.kid, generated.private_bytes, cas=0)
    key = SigningKey(
        kid=generated.kid,
        state=state,
        public_key=generated.x,
        store_version=version,
        created_at=now,
        activated_at=now if state is KeyState.active else None,
    )
    try:
        await repo.add_key(key)
    except Exception:
        await store.delete(generated.kid)
        raise
    log.info("auth.key_created", kid=key.kid, state=state.value)
    return key


async def _promote(
    repo: AuthRepository, nxt: SigningKey, active: SigningKey | None, now: datetime
) -> None:
    if active is not None:
        active.state = KeyState.retired
        active.retired_at = now
        # The old active row must leave the 'active' slot before the new one takes it.
        await repo.save()
        log.info("auth.key_retired", kid=active.kid)
    nxt.state = KeyState.active
    nxt.activated_at = now
    await repo.save()
    log.info("auth.key_activated", kid=nxt.kid, previous=active.kid if active else None)


async def rotate(
    session: AsyncSession, store: KeyStore, settings: AuthSettings, now: datetime
) -> RotationReport:
    """Idempotent: brings the key set to where the clock says it should be."""
    repo = AuthRepository(session)
    await repo.lock_key_set()
    report = RotationReport()
    keys = await _keys(repo)
    active = keys[KeyState.active][0] if keys[KeyState.active] else None
    nxt = keys[KeyState.next][0] if keys[KeyState.next] else None

    if active is None and nxt is None and not keys[KeyState.retired]:
        # First start: no verifier can hold a stale JWKS yet, so the first key signs at once.
        active = await _create(repo, store, KeyState.active, now)
        report.add("created active", active.kid)
    elif (
        nxt is not None
        and may_sign_from(nxt, settings) <= now
        and (
            active is None
            or active.activated_at is None
            or active.activated_at + timedelta(days=settings.key_signing_days) <= now
        )
    ):
        await _promote(repo, nxt, active, now)
        if active is not None:
            report.add("retired", active.kid)
        report.add("activated", nxt.kid)
        active, nxt = nxt, None

    if nxt is None:
        nxt = await _create(repo, store, KeyState.next, now)
        report.add("created next", nxt.kid)

    for retired in keys[KeyState.retired]:
        if retired.state == KeyState.retired and removable_from(retired, settings) <= now:
            retired.state = KeyState.removed
            retired.removed_at = now
            await repo.save()
            await store.delete(retired.kid)
            log.info("auth.key_removed", kid=retired.kid)
            report.add("removed", retired.kid)
    return report


async def cutover(
    session: AsyncSession, store: KeyStore, settings: AuthSettings, now: datetime
) -> RotationReport:
    """Promotes ``next`` now, ahead of schedule, if it has been published long enough."""
    repo = AuthRepository(session)
    await repo.lock_key_set()
    keys = await _keys(repo)
    active = keys[KeyState.active][0] if keys[KeyState.active] else None
    if not keys[KeyState.next]:
        raise CutoverRefusedError("There is no next key to promote; run the rotation first.")
    nxt = keys[KeyState.next][0]
    ready = may_sign_from(nxt, settings)
    if ready > now:
        raise CutoverRefusedError(
            f"Key {nxt.kid} was published at {nxt.created_at.isoformat()} and may sign from"
            f" {ready.isoformat()}: verifiers may still cache a JWKS without it."
        )
    await _promote(repo, nxt, active, now)
    report = RotationReport()
    if active is not None:
        report.add("retired", active.kid)
    report.add("activated", nxt.kid)
    # The next rotation would create the new next key; doing it now starts its publish clock.
    created = await _create(repo, store, KeyState.next, now)
    report.add("created next", created.kid)
    return report


async def list_keys(session: AsyncSession) -> list[SigningKeyRead]:
    return [SigningKeyRead.model_validate(row) for row in await AuthRepository(session).keys()]
