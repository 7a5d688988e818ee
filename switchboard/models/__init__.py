"""Every table, importable from one place so Alembic sees the whole metadata."""

from switchboard.models.auth import KeyState, SigningKey
from switchboard.models.base import Base
from switchboard.models.conversations import Conversation, Message, Run
from switchboard.models.identity import (
    Membership,
    PasswordResetToken,
    RefreshToken,
    ServiceAccount,
    ServiceAccountCredential,
    Tenant,
    User,
    UserLoginEvent,
    UserProfile,
)
from switchboard.models.ops import TaskFailure

__all__ = [
    "Base",
    "Conversation",
    "KeyState",
    "Membership",
    "Message",
    "PasswordResetToken",
    "RefreshToken",
    "Run",
    "ServiceAccount",
    "ServiceAccountCredential",
    "SigningKey",
    "TaskFailure",
    "Tenant",
    "User",
    "UserLoginEvent",
    "UserProfile",
]
