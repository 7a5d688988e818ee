"""These tests read files only: they need neither Redis nor Postgres."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _flushed_redis() -> None:
    """Replaces the session's Redis flush (tests/support/redis.py) for this directory."""
