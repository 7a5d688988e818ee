"""Identity endpoints through the real app, Postgres and Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import pytest
from fastapi import Depends, FastAPI
from httpx import AsyncClient
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import RequireRole
from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.auth.principal import Principal
from switchboard.identity.secrets import keyed_hash
from switchboard.kit.db import SessionMaker
from switchboard.models import PasswordResetToken, RefreshToken, User, UserLoginEvent
from switchboard.retention.service import run_retention
from switchboard.settings import Settings
from tests.support.app import in_test_transaction
from tests.support.auth import access_header, claims_for, forge

PASSWORD = "a long enough passphrase"
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.usefixtures("committed_keys")


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def register(client: AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "tenant_name": "Acme", "display_name": "A"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_register_login_and_me(client: AsyncClient) -> None:
    email = new_email()
    registered = await register(client, email)
    pair = await login(client, email.upper())

    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )

    assert me.status_code == 200
    body = me.json()
    assert body["user"]["id"] == registered["user"]["id"]
    assert body["user"]["display_name"] == "A"
    assert body["tenant"]["id"] == registered["tenant"]["id"]
    assert body["roles"] == ["owner"]
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] > 0
    assert pair["refresh_expires_in"] > pair["expires_in"]
    assert pair["refresh_token"].startswith("rt_")


async def test_oauth2_form_login(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)

    ok = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    bad = await client.post("/api/v1/auth/token", data={"username": email, "password": "nope"})

    assert ok.status_code == 200
    assert ok.json()["access_token"].count(".") == 2
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "user\x00@example.com"),
        ("password", "a long enough\x00passphrase"),
        ("scope", "runs:read\x00"),
        ("grant_type", "client_credentials"),
    ],
)
async def test_token_form_refuses_unsafe_text_with_422_naming_the_field(
    client: AsyncClient, field: str, value: str
) -> None:
    form = {"username": new_email(), "password": PASSWORD, field: value}

    refused = await client.post("/api/v1/auth/token", data=form)

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["code"] == "validation_error"
    assert field in refused.json()["detail"]


async def test_email_is_unique_whatever_its_case(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    again = await client.post(
        "/api/v1/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "tenant_name": "B"},
    )
    assert again.status_code == 409
    assert again.json()["code"] == "identity.email_taken"


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short", "at least"),
        ("x" * 129, "at most"),
        ("password1234", "common"),
        ("SAME-AS-EMAIL", "email"),
    ],
)
async def test_weak_passwords_are_refused(client: AsyncClient, password: str, rule: str) -> None:
    email = "same-as-email@example.com" if password == "SAME-AS-EMAIL" else new_email()
    if password == "SAME-AS-EMAIL":
        password = email
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "tenant_name": "T"}
    )

    assert response.status_code == 422
    assert response.json()["code"] == "identity.weak_password"
    assert rule in response.json()["detail"]
    assert password not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "tenant_name": "T"},
        {"password": PASSWORD, "tenant_name": "T"},
        {"email": "a@example.com", "tenant_name": "T"},
        {"email": "a@example.com", "password": PASSWORD},
        {"email": "a@example.com", "password": "p" * 10_240, "tenant_name": "T"},
        {"email": "a@example.com", "password": PASSWORD, "tenant_name": "t" * 10_240},
    ],
)
async def test_bad_registration_input_is_a_422_problem(
    client: AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_wrong_password_and_unknown_email_look_the_same(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)

    wrong = await client.post("/api/v1/auth/login", json={"email": email, "password": "nope" * 4})
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": new_email(), "password": "nope" * 4}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "identity.invalid_credentials"


async def test_known_and_unknown_emails_take_the_same_path_through_bcrypt(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = new_email()
    await register(client, email)
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed[:7])  # "$2b$04$": algorithm and cost
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)

    await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong" * 4})
    known = list(calls)
    calls.clear()
    await client.post("/api/v1/auth/login", json={"email": new_email(), "password": "wrong" * 4})

    assert len(known) == 1
    assert calls == known


async def test_repeated_failures_lock_the_account_with_retry_after(
    client: AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    email = new_email()
    await register(client, email)
    threshold = settings.identity.lockout_threshold
    for _ in range(threshold):
        failed = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": "x" * 12}
        )
        assert failed.status_code == 401

    locked = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})

    assert locked.status_code == 423
    assert locked.json()["code"] == "identity.account_locked"
    assert int(locked.headers["retry-after"]) >= 1
    salt = settings.identity.ip_hash_salt.get_secret_value().encode()
    results = (
        await db_session.scalars(
            select(UserLoginEvent.result).where(
                UserLoginEvent.email_hash == keyed_hash(salt, email.lower())
            )
        )
    ).all()
    assert sorted(results) == sorted(["failure"] * threshold + ["locked"])


async def test_refresh_rotates_and_a_spent_token_revokes_the_family(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    first = await login(client, email)

    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]

    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    descendant = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )

    assert replay.status_code == 401
    assert replay.json()["code"] == "auth.invalid_token"
    assert descendant.status_code == 401


@pytest.mark.parametrize(
    "token",
    ["garbage", "rt_" + "A" * 22 + "." + "B" * 43, "prt_" + "A" * 22 + "." + "B" * 43, ""],
)
async def test_refresh_with_an_invalid_token_is_refused(client: AsyncClient, token: str) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code in (401, 422)
    assert response.headers["content-type"] == PROBLEM


async def test_refresh_with_an_access_token_or_an_expired_one_is_refused(
    client: AsyncClient, db_session: AsyncSession
) -> None:
    email = new_email()
    await register(client, email)
    pair = await login(client, email)

    with_access = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]}
    )
    selector = pair["refresh_token"][3:].split(".")[0]
    await db_session.execute(
        update(RefreshToken)
        .where(RefreshToken.selector == selector)
        .values(expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
    )
    await db_session.commit()
    expired = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )

    assert with_access.status_code == 401
    assert expired.status_code == 401


async def test_logout_revokes_the_family(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    pair = await login(client, email)

    out = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "whatever"})

    assert out.status_code == 204
    assert again.status_code == 401
    assert unknown.status_code == 204


class RecordingNotifier:
    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    async def send_password_reset(self, *, email: str, link: str) -> None:
        self.links[email] = link


async def test_password_reset_is_single_use_and_revokes_sessions(
    app: FastAPI, client: AsyncClient
) -> None:
    notifier = RecordingNotifier()
    app.state.notifier = notifier
    email = new_email()
    await register(client, email)
    before = await login(client, email)

    known = await client.post("/api/v1/auth/password/forgot", json={"email": email})
    unknown = await client.post("/api/v1/auth/password/forgot", json={"email": new_email()})
    assert known.status_code == unknown.status_code == 202
    assert list(notifier.links) == [email]
    token = notifier.links[email].split("token=")[1]

    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "short"}
    )
    new_password = "another long passphrase"
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    reused = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": new_password + "!"}
    )

    assert weak.status_code == 422
    assert reset.status_code == 204
    assert reused.status_code == 400
    assert reused.json()["code"] == "identity.invalid_reset_token"
    old_session = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
    )
    assert old_session.status_code == 401
    old_password = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert old_password.status_code == 401
    await login(client, email, new_password)


async def test_expired_or_forged_reset_token_is_refused(
    app: FastAPI, client: AsyncClient, db_session: AsyncSession
) -> None:
    notifier = RecordingNotifier()
    app.state.notifier = notifier
    email = new_email()
    await register(client, email)
    await client.post("/api/v1/auth/password/forgot", json={"email": email})
    token = notifier.links[email].split("token=")[1]
    await db_session.execute(
        update(PasswordResetToken).values(
            expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1)
        )
    )
    await db_session.commit()

    expired = await client.post(
        "/api/v1/auth/password/reset",
        json={"token": token, "new_password": "a fine new passphrase"},
    )
    forged = await client.post(
        "/api/v1/auth/password/reset",
        json={"token": token[:-4] + "AAAA", "new_password": "a fine new passphrase"},
    )

    assert expired.status_code == 400
    assert forged.status_code == 400


async def test_roles_come_from_the_token(
    app: FastAPI, client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    @app.get("/probe/owners-only")
    async def owners_only(
        principal: Principal = Depends(RequireRole("owner")),  # noqa: B008
    ) -> dict[str, str]:
        return {"tenant": str(principal.tenant_id)}

    email = new_email()
    await register(client, email)
    owner = await login(client, email)
    assert committed_keys.signing_kid is not None
    member = forge(
        access_header(committed_keys.signing_kid),
        claims_for(settings, roles=["member"], sub=str(uuid.uuid4()), tid=str(uuid.uuid4())),
        committed_keys.signing_key,
    )

    allowed = await client.get(
        "/probe/owners-only", headers={"Authorization": f"Bearer {owner['access_token']}"}
    )
    denied = await client.get("/probe/owners-only", headers={"Authorization": f"Bearer {member}"})
    spoofed = await client.get(
        "/probe/owners-only",
        headers={"Authorization": f"Bearer {member}", "X-Tenant-ID": "x", "X-Role": "owner"},
    )

    assert allowed.status_code == 200
    assert denied.status_code == 403
    assert spoofed.status_code == 403


async def test_log_notifier_withholds_links_outside_development(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from switchboard.identity.notifier import LogNotifier

    await LogNotifier(include_link=True).send_password_reset(
        email="a@x.io", link="https://l/SECRET1"
    )
    await LogNotifier(include_link=False).send_password_reset(
        email="a@x.io", link="https://l/SECRET2"
    )

    logged = " ".join(str(record.msg) for record in caplog.records)
    assert "SECRET1" in logged
    assert "SECRET2" not in logged
    assert "identity.password_reset_undelivered" in logged


async def test_login_into_a_tenant_of_which_one_is_no_member_fails(client: AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    other = await register(client, new_email())

    response = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "tenant_id": other["tenant"]["id"]},
    )

    assert response.status_code == 401
    assert response.json()["code"] == "identity.invalid_credentials"


async def test_a_family_ends_at_its_absolute_lifetime_however_often_it_rotates(
    client: AsyncClient, db_session: AsyncSession
) -> None:
    email = new_email()
    await register(client, email)
    first = await login(client, email)
    second = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    selectors = [pair["refresh_token"][3:].split(".")[0] for pair in (first, second)]
    rows = (
        await db_session.scalars(select(RefreshToken).where(RefreshToken.selector.in_(selectors)))
    ).all()
    assert len({row.family_id for row in rows}) == 1
    assert len({row.family_expires_at for row in rows}) == 1  # rotation does not extend it

    await db_session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == rows[0].family_id)
        .values(family_expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
    )
    await db_session.commit()
    ended = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )

    assert ended.status_code == 401
    assert ended.headers["content-type"] == PROBLEM


async def test_login_upgrades_the_hash_to_the_newest_pepper(
    client: AsyncClient, db_session: AsyncSession, settings: Settings, sessionmaker: SessionMaker
) -> None:
    email = new_email()
    registered = await register(client, email)
    user_id = uuid.UUID(registered["user"]["id"])
    before = await db_session.get(User, user_id)
    assert before is not None
    old_hash, old_version = before.password_hash, before.pepper_version
    peppers = dict(settings.identity.password_peppers)
    peppers[max(peppers) + 1] = SecretStr("a brand new pepper, rotated in")
    rotated = settings.model_copy(
        update={"identity": settings.identity.model_copy(update={"password_peppers": peppers})}
    )

    # The API redeployed with the new pepper added.
    async with in_test_transaction(create_app(rotated), sessionmaker) as redeployed:
        await login(redeployed, email)
        db_session.expire_all()
        after = await db_session.get(User, user_id)
        again = await redeployed.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )

    assert after is not None
    assert after.pepper_version == old_version + 1
    assert after.password_hash != old_hash
    assert again.status_code == 200  # the upgraded hash verifies


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", {"email": "a" * 10_000 + "@example.com", "password": PASSWORD}),
        ("/api/v1/auth/login", {"email": "not an email", "password": PASSWORD}),
        ("/api/v1/auth/login", {"email": "a@example.com", "password": "p" * 10_000}),
        ("/api/v1/auth/password/forgot", {"email": "b" * 10_000 + "@example.com"}),
        ("/api/v1/auth/password/forgot", {"email": "@@"}),
        ("/api/v1/auth/password/reset", {"token": "t" * 10_000, "new_password": PASSWORD}),
        ("/api/v1/auth/password/reset", {"token": "tok", "new_password": "p" * 10_000}),
    ],
    ids=[
        "login huge email",
        "login malformed email",
        "login huge password",
        "forgot huge email",
        "forgot malformed email",
        "reset huge token",
        "reset huge password",
    ],
)
async def test_oversized_and_malformed_fields_are_422_problems(
    client: AsyncClient, path: str, body: dict[str, str]
) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_a_disabled_user_cannot_sign_in_and_its_refresh_revokes_the_family(
    client: AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    email = new_email()
    registered = await register(client, email)
    pair = await login(client, email)
    await db_session.execute(
        update(User).where(User.id == uuid.UUID(registered["user"]["id"])).values(status="disabled")
    )
    await db_session.commit()

    signed_in = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )

    assert signed_in.status_code == 401
    assert signed_in.json()["code"] == "identity.invalid_credentials"
    assert refreshed.status_code == 401
    selector = pair["refresh_token"][3:].split(".")[0]
    token = await db_session.scalar(select(RefreshToken).where(RefreshToken.selector == selector))
    assert token is not None
    await db_session.refresh(token)
    assert token.revoked_reason == "access_lost"
    assert token.used_at is None  # the claim went with the failed request
    salt = settings.identity.ip_hash_salt.get_secret_value().encode()
    reasons = (
        await db_session.scalars(
            select(UserLoginEvent.reason).where(
                UserLoginEvent.email_hash == keyed_hash(salt, email.lower()),
                UserLoginEvent.result == "failure",
            )
        )
    ).all()
    assert reasons == ["disabled"]


async def test_retention_deletes_what_sign_in_wrote_once_past_its_windows(
    client: AsyncClient, sessionmaker: SessionMaker, redis: Redis, settings: Settings
) -> None:
    email = new_email()
    registered = await register(client, email)
    first = await login(client, email)
    await client.post("/api/v1/auth/login", json={"email": email, "password": "x" * 12})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    user_id = uuid.UUID(registered["user"]["id"])
    salt = settings.identity.ip_hash_salt.get_secret_value().encode()

    async def left() -> tuple[int, int]:
        async with sessionmaker() as session:
            events = await session.scalar(
                select(func.count())
                .select_from(UserLoginEvent)
                .where(UserLoginEvent.email_hash == keyed_hash(salt, email.lower()))
            )
            tokens = await session.scalar(
                select(func.count())
                .select_from(RefreshToken)
                .where(RefreshToken.user_id == user_id)
            )
        return int(events or 0), int(tokens or 0)

    now = datetime.now(UTC)
    retention = settings.retention
    family_days = settings.identity.refresh_family_max_seconds // 86_400
    later = now + timedelta(
        days=max(retention.login_event_days, family_days + retention.refresh_token_grace_days) + 1
    )
    await run_retention(sessionmaker, redis, retention, buffer_ttl_seconds=3600, now=now)
    kept = await left()
    report = await run_retention(sessionmaker, redis, retention, buffer_ttl_seconds=3600, now=later)

    assert kept == (2, 2)
    assert await left() == (0, 0)
    assert report.counts["login_events"] >= 2
    assert report.counts["refresh_tokens"] >= 2
