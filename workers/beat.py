"""Every periodic task of the system, in one place. Times are UTC."""

from __future__ import annotations

from typing import Any

from switchboard.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "system-heartbeat": {
            "task": "system.heartbeat",
            "schedule": settings.beat.heartbeat_seconds,
            "options": {"expires": settings.beat.heartbeat_seconds},
        },
    }
