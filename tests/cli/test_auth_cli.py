from __future__ import annotations

import asyncio
import json

from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from switchboard.auth.keyring import KeyRing, KeySnapshot
from switchboard.auth.keystore import create_key_store
from switchboard.auth.tokens import TokenType, TokenVerifier
from switchboard.cli import app
from switchboard.kit.db import create_sessionmaker
from switchboard.settings import Settings

runner = CliRunner()


def test_keys_list_and_jwks_print_show_the_committed_key_set(committed_keys: KeySnapshot) -> None:
    listed = runner.invoke(app, ["auth", "keys", "list"])
    printed = runner.invoke(app, ["auth", "jwks", "print"])

    assert listed.exit_code == 0, listed.output
    listed_kids = {line.split()[0] for line in listed.stdout.splitlines()}
    assert set(committed_keys.verification_keys) <= listed_kids
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.stdout)
    assert {key["kid"] for key in document["keys"]} <= listed_kids
    assert "ETag:" in printed.stderr


def test_rotate_is_idempotent_and_early_cutover_is_refused(committed_keys: KeySnapshot) -> None:
    first = runner.invoke(app, ["auth", "keys", "rotate"])
    cutover = runner.invoke(app, ["auth", "keys", "cutover"])

    assert first.exit_code == 0, first.output
    assert cutover.exit_code == 1
    assert "refused:" in cutover.stderr


async def test_token_issue_prints_a_verifiable_access_token(
    committed_keys: KeySnapshot, engine: AsyncEngine, settings: Settings
) -> None:
    # The command runs its own event loop, so it cannot run on this test's.
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["auth", "token", "issue", "--subject", "u-1", "--tenant", "t-1", "--role", "owner"],
    )

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    keyring = KeyRing(create_sessionmaker(engine), create_key_store(settings.auth), settings.auth)
    claims = TokenVerifier(settings.auth).verify(token, await keyring.reload(), TokenType.access)
    assert (claims["sub"], claims["tid"], claims["roles"]) == ("u-1", "t-1", ["owner"])


def test_token_issue_is_refused_in_production(committed_keys: KeySnapshot) -> None:
    env = {
        "ENVIRONMENT": "production",
        "FLOWER_PASSWORD": "x" * 20,
        "AUTH_KEY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    }
    result = runner.invoke(
        app, ["auth", "token", "issue", "--subject", "u", "--tenant", "t"], env=env
    )
    assert result.exit_code == 2
    assert "refused" in result.stderr
