"""The notifier that sends email: each message becomes a sealed mail job in the request's job
buffer, so it goes out only once the request has committed, and never on the request path."""

from __future__ import annotations

from switchboard.kit.jobs import JobBuffer
from switchboard.mail.jobs import SEND
from switchboard.mail.messages import Mail, MailKind
from switchboard.mail.sealing import MailSealer


class MailNotifier:
    """Identity's ``Notifier``, by email. Built per request, on that request's job buffer."""

    def __init__(self, jobs: JobBuffer, sealer: MailSealer) -> None:
        self._jobs = jobs
        self._sealer = sealer

    async def send_password_reset(self, *, email: str, link: str) -> None:
        self._enqueue(Mail(kind=MailKind.password_reset, to=email, link=link))

    async def send_invitation(self, *, email: str, link: str, tenant_name: str, role: str) -> None:
        self._enqueue(
            Mail(kind=MailKind.invitation, to=email, link=link, tenant_name=tenant_name, role=role)
        )

    def _enqueue(self, mail: Mail) -> None:
        self._jobs.enqueue(SEND, self._sealer.seal(mail))
