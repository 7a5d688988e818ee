"""Password reset: a single-use link by email, then a new password that ends every session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from switchboard.identity.errors import InvalidResetTokenError
from switchboard.identity.notifier import Notifier
from switchboard.identity.passwords import PasswordHasher, check_password_policy
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.secrets import (
    event_hash,
    new_token,
    parse_token,
    secret_hash,
    secret_matches,
    token_pepper,
)
from switchboard.settings import Settings

log = structlog.get_logger("switchboard.identity")

RESET_PREFIX = "prt"


@dataclass
class PasswordResetService:
    repo: IdentityRepository
    settings: Settings
    hasher: PasswordHasher
    notifier: Notifier

    async def forgot_password(self, email: str) -> None:
        """Sends a reset link if the account exists; the caller answers 202 either way."""
        user = await self.repo.user_by_email(email)
        if user is None or user.status != "active":
            email_hash = event_hash(self.settings.identity, email.lower())
            log.info("identity.password_reset_unknown", email_hash=email_hash)
            return
        token = new_token(RESET_PREFIX)
        ttl = timedelta(seconds=self.settings.identity.reset_token_ttl_seconds)
        self.repo.add_reset_token(
            user.id,
            token.selector,
            secret_hash(token_pepper(self.settings.auth), token.secret),
            datetime.now(UTC) + ttl,
        )
        await self.repo.flush()
        link = self.settings.identity.reset_url + token.value
        await self.notifier.send_password_reset(email=user.email, link=link)

    async def reset_password(self, value: str, new_password: str) -> None:
        parsed = parse_token(value, RESET_PREFIX)
        row = await self.repo.reset_by_selector(parsed.selector) if parsed else None
        now = datetime.now(UTC)
        if (
            parsed is None
            or row is None
            or not secret_matches(token_pepper(self.settings.auth), parsed.secret, row.secret_hash)
            or row.used_at is not None
            or row.expires_at <= now
        ):
            raise InvalidResetTokenError()
        user = await self.repo.user(row.user_id)
        if user is None:
            raise InvalidResetTokenError()
        identity = self.settings.identity
        # Checked before the token is spent, so a weak choice does not burn the link.
        check_password_policy(
            new_password,
            email=user.email,
            min_length=identity.password_min_length,
            max_length=identity.password_max_length,
        )
        if not await self.repo.claim_reset(row.id, now):
            raise InvalidResetTokenError()
        hashed = await self.hasher.hash_async(new_password)
        user.password_hash, user.pepper_version = hashed.value, hashed.pepper_version
        user.password_changed_at = now
        await self.repo.spend_user_resets(user.id, now)
        revoked = await self.repo.revoke_user_tokens(user.id, now, "password_reset")
        log.info("identity.password_reset", user_id=str(user.id), revoked_tokens=revoked)
