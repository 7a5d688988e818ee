"""The key lifecycle against real Postgres: timings, idempotence, and what verifies when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth import service
from switchboard.auth.errors import CutoverRefusedError, InvalidTokenError
from switchboard.auth.keyring import KeyRing
from switchboard.auth.keystore import KeyNotFoundError, KeyStore
from switchboard.auth.settings import AuthSettings
from switchboard.auth.tokens import TokenSigner, TokenType, TokenVerifier
from switchboard.kit.db import SessionMaker
from switchboard.models import KeyState
from switchboard.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def empty_key_set(db_session: AsyncSession) -> None:
    # The committed session keys are deleted inside this test's transaction only.
    await db_session.execute(text("DELETE FROM signing_key"))
    await db_session.commit()


async def _rotate(
    sessionmaker: SessionMaker, store: KeyStore, auth: AuthSettings, now: datetime
) -> list[str]:
    async with sessionmaker() as session, session.begin():
        return (await service.rotate(session, store, auth, now)).actions


async def _cutover(
    sessionmaker: SessionMaker, store: KeyStore, auth: AuthSettings, now: datetime
) -> list[str]:
    async with sessionmaker() as session, session.begin():
        return (await service.cutover(session, store, auth, now)).actions


async def _states(sessionmaker: SessionMaker) -> dict[str, KeyState]:
    async with sessionmaker() as session:
        return {key.kid: key.state for key in await service.list_keys(session)}


def _publish_wait(auth: AuthSettings) -> timedelta:
    return timedelta(seconds=auth.jwks_max_age_seconds + auth.publish_margin_seconds)


@pytest.mark.usefixtures("empty_key_set")
async def test_first_rotation_creates_an_active_and_a_next_key(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    actions = await _rotate(sessionmaker, key_store, settings.auth, T0)

    states = await _states(sessionmaker)
    assert sorted(states.values()) == [KeyState.active, KeyState.next]
    assert [action.split()[0:2] for action in actions] == [
        ["created", "active"],
        ["created", "next"],
    ]
    for kid in states:
        assert len(await key_store.get(kid)) == 32
    assert await _rotate(sessionmaker, key_store, settings.auth, T0 + timedelta(minutes=1)) == []


@pytest.mark.usefixtures("empty_key_set")
async def test_cutover_waits_until_the_next_key_was_published_long_enough(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    auth = settings.auth
    await _rotate(sessionmaker, key_store, auth, T0)
    ready = T0 + _publish_wait(auth)

    with pytest.raises(CutoverRefusedError, match="may sign from") as refused:
        await _cutover(sessionmaker, key_store, auth, ready - timedelta(seconds=1))
    assert ready.isoformat() in refused.value.message

    before = await _states(sessionmaker)
    actions = await _cutover(sessionmaker, key_store, auth, ready)
    after = await _states(sessionmaker)

    old_active = next(kid for kid, state in before.items() if state is KeyState.active)
    old_next = next(kid for kid, state in before.items() if state is KeyState.next)
    assert after[old_active] is KeyState.retired
    assert after[old_next] is KeyState.active
    assert sorted(after.values()).count(KeyState.next) == 1
    assert actions[:2] == [f"retired {old_active}", f"activated {old_next}"]


@pytest.mark.usefixtures("empty_key_set")
async def test_cutover_without_a_next_key_is_refused(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    with pytest.raises(CutoverRefusedError, match="no next key"):
        await _cutover(sessionmaker, key_store, settings.auth, T0)


@pytest.mark.usefixtures("empty_key_set")
async def test_rotation_promotes_after_the_signing_period_and_removes_after_the_overlap(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    auth = settings.auth
    await _rotate(sessionmaker, key_store, auth, T0)
    first = next(
        kid for kid, state in (await _states(sessionmaker)).items() if state is KeyState.active
    )

    # Still inside the signing period: nothing moves, however long next has been published.
    almost = T0 + timedelta(days=auth.key_signing_days) - timedelta(minutes=1)
    assert await _rotate(sessionmaker, key_store, auth, almost) == []

    due = T0 + timedelta(days=auth.key_signing_days)
    actions = await _rotate(sessionmaker, key_store, auth, due)
    assert f"retired {first}" in actions
    assert (await _states(sessionmaker))[first] is KeyState.retired

    overlap = timedelta(minutes=auth.dual_signing_overlap_minutes)
    assert await _rotate(sessionmaker, key_store, auth, due + overlap - timedelta(seconds=1)) == []
    actions = await _rotate(sessionmaker, key_store, auth, due + overlap)
    assert actions == [f"removed {first}"]
    assert (await _states(sessionmaker))[first] is KeyState.removed
    with pytest.raises(KeyNotFoundError):
        await key_store.get(first)


@pytest.mark.usefixtures("empty_key_set")
async def test_token_from_before_a_cutover_verifies_during_the_overlap_and_not_after_removal(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    auth = settings.auth
    keyring = KeyRing(sessionmaker, key_store, auth)
    signer, verifier = TokenSigner(auth), TokenVerifier(auth)
    claims = {"tid": "t", "roles": []}

    await _rotate(sessionmaker, key_store, auth, T0)
    before = signer.sign(await keyring.reload(), TokenType.access, "u", 300, claims)

    await _cutover(sessionmaker, key_store, auth, T0 + _publish_wait(auth))
    during = await keyring.reload()
    assert during.signing_kid != before.kid
    assert verifier.verify(before.token, during, TokenType.access)["sub"] == "u"
    after_cutover = signer.sign(during, TokenType.access, "u", 300, claims)
    assert verifier.verify(after_cutover.token, during, TokenType.access)["sub"] == "u"

    removal = T0 + _publish_wait(auth) + timedelta(minutes=auth.dual_signing_overlap_minutes)
    await _rotate(sessionmaker, key_store, auth, removal)
    removed = await keyring.reload()
    assert before.kid not in removed.verification_keys
    with pytest.raises(InvalidTokenError) as rejected:
        verifier.verify(before.token, removed, TokenType.access)
    assert rejected.value.reason == "unknown_kid"
    assert verifier.verify(after_cutover.token, removed, TokenType.access)["sub"] == "u"


@pytest.mark.usefixtures("empty_key_set")
async def test_jwks_always_holds_every_key_that_signed_a_still_valid_token(
    sessionmaker: SessionMaker, key_store: KeyStore, settings: Settings
) -> None:
    """Sixty-five days of hourly rotation checks with a token signed every hour."""
    auth = settings.auth
    keyring = KeyRing(sessionmaker, key_store, auth)
    ttl = timedelta(seconds=auth.longest_token_ttl_seconds + auth.leeway_seconds)
    issued: list[tuple[str, datetime]] = []
    activations = 0
    now = T0
    while now < T0 + timedelta(days=65):
        actions = await _rotate(sessionmaker, key_store, auth, now)
        activations += sum(action.startswith("activated") for action in actions)
        snapshot = await keyring.reload()
        assert snapshot.signing_kid is not None
        issued.append((snapshot.signing_kid, now + ttl))
        published = set(snapshot.verification_keys)
        still_valid = {kid for kid, expires in issued if expires > now}
        assert still_valid <= published, now
        assert len(published) <= 3
        now += timedelta(hours=1)
    assert auth.key_signing_days == 30
    assert activations == 2  # on day 30 and day 60
