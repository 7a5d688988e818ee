"""The SMTP sender in the test process against the tests' real SMTP server: what it sends, and
which failures it calls transient."""

from __future__ import annotations

import uuid

import pytest

from switchboard.mail.errors import TransientMailError, UndeliverableMailError
from switchboard.mail.messages import Mail, MailKind, compose
from switchboard.mail.sealing import MailSealer
from switchboard.mail.sender import SmtpSender, deliver
from switchboard.mail.settings import SmtpSecurity, SmtpSettings
from tests.conftest import SMTP_PORT
from tests.mail.conftest import SmtpServer
from tests.support.processes import free_port

LINK = "http://127.0.0.1:3000/reset-password?token=prt_a.b"


def sender(port: int = SMTP_PORT, security: SmtpSecurity = SmtpSecurity.none) -> SmtpSender:
    return SmtpSender(
        SmtpSettings(host="127.0.0.1", port=port, security=security, timeout_seconds=2)
    )


def mail_to(prefix: str) -> Mail:
    return Mail(
        kind=MailKind.password_reset, to=f"{prefix}-{uuid.uuid4().hex[:8]}@example.com", link=LINK
    )


async def test_deliver_opens_composes_and_sends(smtp_server: SmtpServer) -> None:
    sealer = MailSealer(b"secret")
    mail = mail_to("user")

    await deliver(sender(), sealer, sealer.seal(mail))

    received = await smtp_server.wait_for(mail.to, timeout=5)
    assert received["From"] == "no-reply@switchboard.invalid"
    text = received.get_body(preferencelist=("plain",))
    assert text is not None
    assert LINK in str(text.get_content())


async def test_a_job_sealed_with_another_key_is_undeliverable(smtp_server: SmtpServer) -> None:
    sealed = MailSealer(b"old secret").seal(mail_to("user"))

    with pytest.raises(UndeliverableMailError, match="cannot be opened"):
        await deliver(sender(), MailSealer(b"new secret"), sealed)


@pytest.mark.parametrize(
    ("prefix", "error", "reply"),
    [
        ("reject", UndeliverableMailError, "550 5.1.1"),
        ("defer", TransientMailError, "451 4.3.0"),
    ],
)
async def test_a_reply_code_decides_whether_to_retry(
    smtp_server: SmtpServer, prefix: str, error: type[Exception], reply: str
) -> None:
    mail = mail_to(prefix)

    with pytest.raises(error, match=reply):
        await sender().send(compose(mail, sender="no-reply@example.com"))


async def test_an_unreachable_server_is_transient() -> None:
    with pytest.raises(TransientMailError, match="Connect"):
        await sender(port=free_port()).send(compose(mail_to("user"), sender="a@example.com"))


async def test_starttls_is_required_when_asked_for(smtp_server: SmtpServer) -> None:
    # The tests' server offers no STARTTLS: the mail is not sent in clear instead.
    mail = mail_to("user")

    with pytest.raises(TransientMailError, match="STARTTLS"):
        await sender(security=SmtpSecurity.starttls).send(compose(mail, sender="a@example.com"))
    assert smtp_server.handler.attempts[mail.to] == 0


def test_a_sender_needs_a_host() -> None:
    with pytest.raises(UndeliverableMailError, match="SMTP_HOST"):
        SmtpSender(SmtpSettings())
