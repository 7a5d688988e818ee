"""``switchboard identity``: demo data and service accounts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.cli.common import load_or_exit, transaction
from switchboard.identity.passwords import PasswordHasher
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.service import create_service_account
from switchboard.models import Membership, Tenant, UserProfile
from switchboard.settings import Environment, Settings

app = typer.Typer(help="Users, tenants and service accounts.", no_args_is_help=True)
service_accounts = typer.Typer(help="Machine clients.", no_args_is_help=True)
app.add_typer(service_accounts, name="service-account")

DEMO_PASSWORD = "switchboard-demo-password"  # noqa: S105 (development seed data)
DEMO_USERS = (
    ("owner@demo.switchboard.dev", "owner", True),
    ("admin@demo.switchboard.dev", "admin", False),
    ("member@demo.switchboard.dev", "member", False),
    ("billing@demo.switchboard.dev", "billing", False),
)


@app.command("seed")
def seed() -> None:
    """Create a demo tenant and one user per role (development only). Idempotent."""
    settings = load_or_exit()
    if settings.environment is not Environment.development:
        typer.echo("switchboard: identity seed runs only with ENVIRONMENT=development", err=True)
        raise typer.Exit(2)
    created = asyncio.run(transaction(settings, _seed))
    typer.echo(f"demo tenant ready ({created} users created); password for all: {DEMO_PASSWORD}")
    for email, role, operator in DEMO_USERS:
        typer.echo(f"  {email:<32} {role}{' + operator' if operator else ''}")


async def _seed(session: AsyncSession, settings: Settings) -> int:
    repo = IdentityRepository(session)
    hasher = PasswordHasher.from_settings(settings.identity)
    tenant: Tenant | None = None
    created = 0
    for email, role, operator in DEMO_USERS:
        user = await repo.user_by_email(email)
        if user is not None:
            continue
        if tenant is None:
            tenant = Tenant(name="Demo")
            session.add(tenant)
            await session.flush()
        hashed = await hasher.hash_async(DEMO_PASSWORD)
        user = repo.add_user(email, hashed, email_verified=True, operator=operator)
        await session.flush()
        session.add(UserProfile(user_id=user.id, display_name=f"Demo {role}"))
        session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
        created += 1
    return created


@service_accounts.command("create")
def create(
    tenant: Annotated[uuid.UUID, typer.Option(help="The tenant the account acts for.")],
    name: Annotated[str, typer.Option(help="A name for people.")],
    scope: Annotated[list[str] | None, typer.Option(help="A scope; repeat for several.")] = None,
) -> None:
    """Create a service account; prints its client id and secret once."""
    settings = load_or_exit()

    async def run(session: AsyncSession, settings: Settings) -> tuple[str, str]:
        credential = await create_service_account(
            session, settings, tenant_id=tenant, name=name, scopes=list(scope or [])
        )
        return credential.client_id, credential.client_secret

    client_id, secret = asyncio.run(transaction(settings, run))
    typer.echo(f"client_id={client_id}")
    typer.echo(f"client_secret={secret}")
