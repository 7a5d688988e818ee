"""Composing mail and sealing mail jobs, without a server."""

from __future__ import annotations

import pytest

from switchboard.kit.jobs import JobBuffer
from switchboard.mail.errors import UndeliverableMailError
from switchboard.mail.jobs import SEND
from switchboard.mail.messages import Mail, MailKind, compose
from switchboard.mail.notifier import MailNotifier
from switchboard.mail.sealing import MailSealer
from switchboard.mail.settings import SmtpSecurity
from switchboard.settings import SettingsError, load_settings

LINK = "https://app.example.com/accept-invitation?token=inv_abc.def"


def parts(mail: Mail) -> tuple[str, str, str]:
    message = compose(mail, sender="Switchboard <no-reply@example.com>")
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return str(message["Subject"]), str(text.get_content()), str(html.get_content())


def test_an_invitation_names_the_tenant_and_role_in_both_parts() -> None:
    mail = Mail(
        kind=MailKind.invitation,
        to="a@example.com",
        link=LINK,
        tenant_name="A&B <Co>",
        role="admin",
    )

    subject, text, html = parts(mail)

    assert subject == "You are invited to join A&B <Co> on Switchboard"
    assert LINK in text
    assert "A&B <Co>" in text
    assert "as admin" in text
    assert "A&amp;B &lt;Co&gt;" in html  # escaped, never markup from a tenant's name
    assert 'href="https://app.example.com/accept-invitation?token=inv_abc.def"' in html


def test_a_reset_mail_carries_the_link() -> None:
    link = "http://127.0.0.1:3000/reset-password?token=prt_x.y"
    subject, text, html = parts(Mail(kind=MailKind.password_reset, to="a@example.com", link=link))

    assert subject == "Reset your Switchboard password"
    assert link in text
    assert link in html


def test_a_sealed_mail_hides_the_link_and_opens_with_the_same_key() -> None:
    sealer = MailSealer(b"one secret")
    mail = Mail(kind=MailKind.password_reset, to="a@example.com", link=LINK)

    sealed = sealer.seal(mail)

    assert "token" not in sealed
    assert "example.com" not in sealed
    assert sealer.open(sealed) == mail
    with pytest.raises(UndeliverableMailError):
        MailSealer(b"another secret").open(sealed)
    with pytest.raises(UndeliverableMailError):
        sealer.open(sealed[:-6] + "AAAAAA")


async def test_the_notifier_buffers_one_sealed_job_per_message() -> None:
    jobs = JobBuffer()
    sealer = MailSealer(b"one secret")
    notifier = MailNotifier(jobs, sealer)

    await notifier.send_password_reset(email="a@example.com", link=LINK)
    await notifier.send_invitation(email="b@example.com", link=LINK, tenant_name="T", role="member")

    sent = [(job.name, sealer.open(job.args[0])) for job in jobs.pending]
    assert [name for name, _ in sent] == [SEND, SEND]
    assert [(m.kind, m.to, m.tenant_name) for _, m in sent] == [
        (MailKind.password_reset, "a@example.com", None),
        (MailKind.invitation, "b@example.com", "T"),
    ]


def test_smtp_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("SMTP_PORT", "465")
    monkeypatch.setenv("SMTP_SECURITY", "tls")
    monkeypatch.setenv("SMTP_USERNAME", "")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")

    smtp = load_settings().smtp

    assert smtp.configured
    assert (smtp.host, smtp.port, smtp.security) == ("mail.example.com", 465, SmtpSecurity.tls)
    assert smtp.username is None
    assert smtp.password is not None
    assert smtp.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(smtp)
    monkeypatch.setenv("SMTP_SECURITY", "ssl")
    with pytest.raises(SettingsError, match="SMTP_SECURITY"):
        load_settings()
