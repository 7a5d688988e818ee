"""The ``switchboard`` command line."""

from switchboard.cli.main import app

__all__ = ["app"]
