"""Every table, importable from one place so Alembic sees the whole metadata."""

from switchboard.models.auth import KeyState, SigningKey
from switchboard.models.base import Base
from switchboard.models.ops import TaskFailure

__all__ = ["Base", "KeyState", "SigningKey", "TaskFailure"]
