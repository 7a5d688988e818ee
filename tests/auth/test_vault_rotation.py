"""The whole lifecycle with private keys in a real Vault-compatible server (OpenBao)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hvac
from pydantic import AnyUrl, SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth import service
from switchboard.auth.keyring import KeyRing
from switchboard.auth.keystore import VaultKeyStore, create_key_store
from switchboard.auth.settings import KeyStoreKind
from switchboard.auth.tokens import TokenSigner, TokenType, TokenVerifier
from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.vault import VaultServer


async def test_rotation_signs_and_removes_with_keys_in_vault(
    vault_server: VaultServer,
    db_session: AsyncSession,
    sessionmaker: SessionMaker,
    settings: Settings,
) -> None:
    auth = settings.auth.model_copy(
        update={
            "key_store": KeyStoreKind.vault,
            "vault_url": AnyUrl(vault_server.url),
            "vault_token": SecretStr(vault_server.token),
            "vault_path": "switchboard-test/rotation",
        }
    )
    store = create_key_store(auth)
    assert isinstance(store, VaultKeyStore)
    await db_session.execute(text("DELETE FROM signing_key"))
    await db_session.commit()
    t0 = datetime(2026, 3, 1, tzinfo=UTC)

    async with sessionmaker() as session, session.begin():
        await service.rotate(session, store, auth, t0)
    snapshot = await KeyRing(sessionmaker, store, auth).reload()
    token = TokenSigner(auth).sign(snapshot, TokenType.access, "u", 60, {"tid": "t", "roles": []})
    assert TokenVerifier(auth).verify(token.token, snapshot, TokenType.access)["sub"] == "u"

    vault = hvac.Client(url=vault_server.url, token=vault_server.token)
    stored = vault.secrets.kv.v2.read_secret_version(
        path=f"switchboard-test/rotation/{token.kid}",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert stored["data"]["metadata"]["version"] == 1

    ready = t0 + timedelta(days=auth.key_signing_days)
    removal = ready + timedelta(minutes=auth.dual_signing_overlap_minutes)
    async with sessionmaker() as session, session.begin():
        await service.rotate(session, store, auth, ready)
    async with sessionmaker() as session, session.begin():
        actions = (await service.rotate(session, store, auth, removal)).actions

    assert actions == [f"removed {token.kid}"]
    listed = vault.secrets.kv.v2.list_secrets(
        path="switchboard-test/rotation", mount_point="secret"
    )
    assert token.kid not in listed["data"]["keys"]
