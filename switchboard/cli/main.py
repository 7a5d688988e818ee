"""``switchboard``: set-up, configuration and operations commands."""

from __future__ import annotations

import asyncio
import json

import typer

from switchboard.cli.auth import app as auth_app
from switchboard.cli.billing import app as billing_app
from switchboard.cli.chat import chat
from switchboard.cli.common import load_or_exit
from switchboard.cli.identity import app as identity_app
from switchboard.cli.ops import app as ops_app
from switchboard.cli.retention import app as retention_app
from switchboard.kit.logging import configure_logging
from switchboard.kit.services import ensure_database, start_hint, unreachable_services
from switchboard.settings import render_env_example

app = typer.Typer(
    help="Switchboard operations.", no_args_is_help=True, pretty_exceptions_enable=False
)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
services_app = typer.Typer(help="The services Switchboard depends on.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL database.", no_args_is_help=True)


@app.callback()
def _configure(ctx: typer.Context) -> None:
    # Logs go to stderr, so commands that print a value (a token, a JWKS) stay pipeable. The
    # chat client is a client of the API: it reads no server settings.
    if ctx.invoked_subcommand not in ("config", "chat"):
        settings = load_or_exit()
        configure_logging(settings.log, settings.environment, service="cli")


app.add_typer(config_app, name="config")
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")
app.add_typer(auth_app, name="auth")
app.add_typer(identity_app, name="identity")
app.add_typer(billing_app, name="billing")
app.add_typer(retention_app, name="retention")
app.add_typer(ops_app, name="ops")
app.command("chat")(chat)


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration and print it, secrets masked."""
    settings = load_or_exit()
    typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@config_app.command("example")
def config_example() -> None:
    """Print every variable with its default, as in `.env.example`."""
    typer.echo(render_env_example(), nl=False)


@config_app.command("urls")
def config_urls() -> None:
    """Print where each process of `make dev` can be reached."""
    settings = load_or_exit()
    base = str(settings.api.public_url).rstrip("/")
    flower = f"http://{settings.flower.host}:{settings.flower.port}"
    typer.echo(
        f"\n  API      {base}  (OpenAPI docs {base}/docs)"
        f"\n  Console  {base}/console"
        f"\n  Ready    {base}/health/ready"
        f"\n  Metrics  {base}/metrics  (every process of this machine)"
        "\n  Workers  http://127.0.0.1:9101/metrics (default, maintenance),"
        " http://127.0.0.1:9102/metrics (runs), http://127.0.0.1:9103/metrics (webhooks):"
        " tasks and queue lengths"
        f"\n  Flower   {flower}  (basic auth, user {settings.flower.user})"
        "\n  Worker and beat log to this terminal; Ctrl-C stops everything.\n"
    )


@services_app.command("check")
def services_check() -> None:
    """Exit non-zero, with one line saying how to start them, if Postgres, Redis or the broker
    is down."""
    settings = load_or_exit()
    down = asyncio.run(unreachable_services(settings))
    if down:
        typer.echo(f"switchboard: {'; '.join(map(str, down))}: {start_hint(down)}", err=True)
        raise typer.Exit(1)
    if settings.celery.amqp_broker:
        typer.echo("PostgreSQL, Redis and RabbitMQ are reachable.")
    else:
        typer.echo("PostgreSQL and Redis are reachable.")


@db_app.command("ensure")
def db_ensure() -> None:
    """Create the database named by DATABASE_URL if it does not exist yet."""
    settings = load_or_exit()
    created = asyncio.run(ensure_database(settings))
    name = settings.database.url.path or ""
    typer.echo(f"created database {name.lstrip('/')}" if created else "database exists")
