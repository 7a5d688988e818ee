"""Starts Flower on the Celery broker with basic auth taken from settings."""

from __future__ import annotations

import os
import shutil

from switchboard.settings import settings_or_exit


def main() -> None:
    settings = settings_or_exit()
    env = dict(os.environ)
    # Passed through the environment so the password never shows in the process list.
    env["FLOWER_BASIC_AUTH"] = (
        f"{settings.flower.user}:{settings.flower.password.get_secret_value()}"
    )
    celery = shutil.which("celery") or "celery"
    argv = [
        celery,
        "--app=workers.celery_app:celery_app",
        "flower",
        f"--address={settings.flower.host}",
        f"--port={settings.flower.port}",
    ]
    os.execvpe(celery, argv, env)  # noqa: S606 (replaces this process; argv is ours)


if __name__ == "__main__":
    main()
