"""Every table, importable from one place so Alembic sees the whole metadata."""

from switchboard.models.auth import KeyState, SigningKey
from switchboard.models.base import Base
from switchboard.models.billing import (
    BillingCustomer,
    Plan,
    StripeEvent,
    Subscription,
    UsageRecord,
    UsageThreshold,
)
from switchboard.models.conversations import Conversation, Message, Run, RunApproval
from switchboard.models.identity import (
    Invitation,
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
from switchboard.models.retention import TenantDataDeletion
from switchboard.models.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "Base",
    "BillingCustomer",
    "Conversation",
    "Invitation",
    "KeyState",
    "Membership",
    "Message",
    "PasswordResetToken",
    "Plan",
    "RefreshToken",
    "Run",
    "RunApproval",
    "ServiceAccount",
    "ServiceAccountCredential",
    "SigningKey",
    "StripeEvent",
    "Subscription",
    "TaskFailure",
    "Tenant",
    "TenantDataDeletion",
    "UsageRecord",
    "UsageThreshold",
    "User",
    "UserLoginEvent",
    "UserProfile",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
