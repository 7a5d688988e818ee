"""Delivering one mail over SMTP, and telling a failure worth retrying from a final one."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import structlog

from switchboard.mail.errors import TransientMailError, UndeliverableMailError
from switchboard.mail.messages import compose
from switchboard.mail.sealing import MailSealer
from switchboard.mail.settings import SmtpSecurity, SmtpSettings

log = structlog.get_logger("switchboard.mail")


class SmtpSender:
    """One SMTP connection per mail: mail is rare, and a fresh connection never goes stale."""

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.host is None:
            raise UndeliverableMailError("No SMTP server is configured (SMTP_HOST).")
        self._settings = settings
        self._host = settings.host

    @property
    def from_address(self) -> str:
        return self._settings.from_address

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
        password = s.password.get_secret_value() if s.password else None
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=s.port,
                username=s.username,
                password=password or None,
                use_tls=s.security is SmtpSecurity.tls,
                start_tls=s.security is SmtpSecurity.starttls,
                timeout=s.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            raise _by_code(min(codes, default=550), _reply_text(exc)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, f"{exc.code} {exc.message}") from None
        except aiosmtplib.SMTPNotSupported as exc:
            # The server lacks what this mail needs (SMTPUTF8, a login): so will the next try.
            raise UndeliverableMailError(f"The SMTP server cannot take the mail: {exc}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Refused or dropped connections, timeouts, TLS handshakes that did not finish.
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from None


def _by_code(code: int, text: str) -> TransientMailError | UndeliverableMailError:
    if 400 <= code < 500:
        return TransientMailError(f"The SMTP server deferred the mail: {text}")
    return UndeliverableMailError(f"The SMTP server refused the mail: {text}")


def _reply_text(exc: aiosmtplib.SMTPRecipientsRefused) -> str:
    return "; ".join(f"{refused.code} {refused.message}" for refused in exc.recipients)


async def deliver(sender: SmtpSender, sealer: MailSealer, sealed: str) -> None:
    """The mail job: open the sealed mail, compose it, send it. Raises
    :class:`TransientMailError` when trying again later may succeed."""
    mail = sealer.open(sealed)
    message = compose(mail, sender=sender.from_address)
    await sender.send(message)
    # Neither the link nor the address is logged: the kind and the message id suffice.
    log.info("mail.sent", kind=mail.kind.value, message_id=message["Message-ID"])
