"""``python -m switchboard.cli``: the same as the ``switchboard`` command."""

from switchboard.cli.main import app

app(prog_name="switchboard")
