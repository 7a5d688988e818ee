from __future__ import annotations

import typer

from switchboard.settings import Settings, SettingsError, load_settings


def load_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"switchboard: {exc}", err=True)
        raise typer.Exit(2) from None
