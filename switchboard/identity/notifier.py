"""How users are told things out of band (password-reset links).

The default writes the message to the log, so development and tests need no mail server;
production plugs in an implementation that sends email.
"""

from __future__ import annotations

from typing import Protocol

import structlog

log = structlog.get_logger("switchboard.identity")


class Notifier(Protocol):
    async def send_password_reset(self, *, email: str, link: str) -> None: ...


class LogNotifier:
    async def send_password_reset(self, *, email: str, link: str) -> None:
        # The link is a credential: this notifier is for development, where the log is yours.
        log.warning("identity.password_reset_link", email=email, link=link)
