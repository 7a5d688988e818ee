"""How users are told things out of band (password-reset and invitation links).

The default writes the message to the log, so development and tests need no mail server;
production plugs in an implementation that sends email.
"""

from __future__ import annotations

from typing import Protocol

import structlog

log = structlog.get_logger("switchboard.identity")


class Notifier(Protocol):
    async def send_password_reset(self, *, email: str, link: str) -> None: ...

    async def send_invitation(
        self, *, email: str, link: str, tenant_name: str, role: str
    ) -> None: ...


class LogNotifier:
    """Writes reset and invitation links to the log where that is safe (development and test).
    Elsewhere the link, a credential, is withheld and an error says no mailer is configured."""

    def __init__(self, *, include_link: bool) -> None:
        self._include_link = include_link

    async def send_password_reset(self, *, email: str, link: str) -> None:
        if self._include_link:
            log.warning("identity.password_reset_link", email=email, link=link)
        else:
            log.error("identity.password_reset_undelivered", reason="no mailer configured")

    async def send_invitation(self, *, email: str, link: str, tenant_name: str, role: str) -> None:
        if self._include_link:
            log.warning("identity.invitation_link", email=email, link=link)
        else:
            log.error("identity.invitation_undelivered", reason="no mailer configured")
