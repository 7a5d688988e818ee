"""``switchboard auth``: the key set, JWKS and local test tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth import service
from switchboard.auth.authority import TokenAuthority
from switchboard.auth.errors import CutoverRefusedError, NoSigningKeyError
from switchboard.auth.keyring import KeyRing, load_records, render_jwks
from switchboard.auth.keystore import create_key_store
from switchboard.auth.tokens import TokenType
from switchboard.cli.common import load_or_exit, transaction
from switchboard.kit.db import SessionMaker, create_engine, create_sessionmaker
from switchboard.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="Signing keys, JWKS and tokens.", no_args_is_help=True)
jwks_app = typer.Typer(help="The JSON Web Key Set.", no_args_is_help=True)
keys_app = typer.Typer(help="The signing-key lifecycle.", no_args_is_help=True)
token_app = typer.Typer(help="Tokens for local testing.", no_args_is_help=True)
app.add_typer(jwks_app, name="jwks")
app.add_typer(keys_app, name="keys")
app.add_typer(token_app, name="token")


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[SessionMaker]:
    engine = create_engine(settings.database, application_name="switchboard-cli")
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _in_transaction(
    settings: Settings, work: Callable[[AsyncSession, Settings], Awaitable[T]]
) -> T:
    return asyncio.run(transaction(settings, work))


@jwks_app.command("print")
def jwks_print() -> None:
    """Print the JWKS document exactly as the API serves it, with its ETag."""
    settings = load_or_exit()

    async def run() -> tuple[bytes, str]:
        async with _database(settings) as sessionmaker:
            document = render_jwks(await load_records(sessionmaker), settings.auth.jwks_etag_salt)
        return document.body, document.etag

    body, etag = asyncio.run(run())
    typer.echo(json.dumps(json.loads(body), indent=2))
    typer.echo(f"ETag: {etag}", err=True)


@keys_app.command("list")
def keys_list() -> None:
    """Every key with its state and timestamps."""
    settings = load_or_exit()
    keys = _in_transaction(settings, lambda session, _: service.list_keys(session))
    for key in keys:
        stamps = [
            f"{name}={value.isoformat(timespec='seconds')}"
            for name, value in (
                ("created", key.created_at),
                ("activated", key.activated_at),
                ("retired", key.retired_at),
                ("removed", key.removed_at),
            )
            if value is not None
        ]
        typer.echo(f"{key.kid}  {key.state.value:<8} {' '.join(stamps)}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Run the rotation now (what the scheduled auth.keys.rotate task does)."""
    settings = load_or_exit()
    store = create_key_store(settings.auth)
    report = _in_transaction(
        settings,
        lambda session, s: service.rotate(session, store, s.auth, datetime.now(UTC)),
    )
    typer.echo("\n".join(report.actions) or "nothing to do")


@keys_app.command("cutover")
def keys_cutover() -> None:
    """Promote the next key now, if it has been published long enough."""
    settings = load_or_exit()
    store = create_key_store(settings.auth)
    try:
        report = _in_transaction(
            settings,
            lambda session, s: service.cutover(session, store, s.auth, datetime.now(UTC)),
        )
    except CutoverRefusedError as refused:
        typer.echo(f"refused: {refused.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo("\n".join(report.actions))


@token_app.command("issue")
def token_issue(
    subject: Annotated[str, typer.Option(help="`sub`: the user id.")],
    tenant: Annotated[str, typer.Option(help="`tid`: the tenant id.")],
    role: Annotated[list[str] | None, typer.Option(help="A role; repeat for several.")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Issue an access token signed by the active key. Development and test only."""
    settings = load_or_exit()
    if not settings.environment.local:
        typer.echo("switchboard: token issue is refused outside development and test", err=True)
        raise typer.Exit(2)

    async def run() -> str:
        async with _database(settings) as sessionmaker:
            keyring = KeyRing(sessionmaker, create_key_store(settings.auth), settings.auth)
            authority = TokenAuthority(keyring, settings.auth)
            claims = {"tid": tenant, "roles": list(role or [])}
            issued = await authority.issue(TokenType.access, subject, claims, ttl_seconds=ttl)
        return issued.token

    try:
        typer.echo(asyncio.run(run()))
    except NoSigningKeyError as exc:
        typer.echo(f"switchboard: {exc.message}", err=True)
        raise typer.Exit(1) from None
