"""Limits on what anyone may ask without signing in: sign-up, password reset, token refresh,
accepting an invitation.

Each endpoint has two fixed-window counters in Redis (``kit/ratelimit.py``), shared by every
API process: one per client IP per hour, which stops one address from flooding, and one for
everyone per minute, which caps the load (mail sent, bcrypt work, rows written) a spread-out
flood can cause. The per-IP counter is checked first, so an address already refused spends
none of everyone's budget. A refused request is answered before anything is stored or sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from redis.asyncio import Redis

from switchboard.identity.errors import (
    AcceptInvitationRateLimitedError,
    ForgotPasswordRateLimitedError,
    PublicRateLimitedError,
    RefreshRateLimitedError,
    RegisterRateLimitedError,
    ResetPasswordRateLimitedError,
)
from switchboard.identity.settings import IdentitySettings
from switchboard.kit.ratelimit import RateLimiter

PREFIX = "auth:ratelimit:public"
IP_WINDOW_SECONDS = 3600
GLOBAL_WINDOW_SECONDS = 60
GLOBAL_KEY = "all"


class PublicAction(enum.StrEnum):
    register = "register"
    forgot = "forgot"
    reset = "reset"
    refresh = "refresh"
    accept = "accept"


@dataclass(frozen=True)
class _Rule:
    per_ip_hour: int
    global_minute: int
    error: type[PublicRateLimitedError]


class PublicLimits:
    def __init__(self, redis: Redis, settings: IdentitySettings) -> None:
        s = settings
        self._rules = {
            PublicAction.register: _Rule(
                s.register_ip_per_hour, s.register_global_per_minute, RegisterRateLimitedError
            ),
            PublicAction.forgot: _Rule(
                s.forgot_ip_per_hour, s.forgot_global_per_minute, ForgotPasswordRateLimitedError
            ),
            PublicAction.reset: _Rule(
                s.reset_ip_per_hour, s.reset_global_per_minute, ResetPasswordRateLimitedError
            ),
            PublicAction.refresh: _Rule(
                s.refresh_ip_per_hour, s.refresh_global_per_minute, RefreshRateLimitedError
            ),
            PublicAction.accept: _Rule(
                s.accept_ip_per_hour, s.accept_global_per_minute, AcceptInvitationRateLimitedError
            ),
        }
        self._per_ip = {
            action: RateLimiter(redis, prefix=f"{PREFIX}:{action.value}:ip")
            for action in PublicAction
        }
        self._global = {
            action: RateLimiter(redis, prefix=f"{PREFIX}:{action.value}:global")
            for action in PublicAction
        }

    def global_key(self, action: PublicAction) -> str:
        """The Redis key of everyone's counter for ``action``."""
        return self._global[action].redis_key(GLOBAL_KEY)

    async def check(self, action: PublicAction, *, ip: str) -> None:
        """Count one request of ``action`` from ``ip``; raise the action's 429 when over."""
        rule = self._rules[action]
        retry = await self._per_ip[action].hit(
            ip, limit=rule.per_ip_hour, window_seconds=IP_WINDOW_SECONDS
        )
        if retry is not None:
            raise rule.error(retry, per_address=True)
        retry = await self._global[action].hit(
            GLOBAL_KEY, limit=rule.global_minute, window_seconds=GLOBAL_WINDOW_SECONDS
        )
        if retry is not None:
            raise rule.error(retry, per_address=False)
