"""The messages Switchboard sends: what a job carries, and the email composed from it."""

from __future__ import annotations

import enum
from email.message import EmailMessage
from email.utils import make_msgid
from html import escape

from pydantic import BaseModel


class MailKind(enum.StrEnum):
    password_reset = "password_reset"  # noqa: S105 (a kind of mail, not a password)
    invitation = "invitation"


class Mail(BaseModel):
    """What one mail job carries. It holds a link, a credential: it travels sealed."""

    kind: MailKind
    to: str
    link: str
    tenant_name: str | None = None
    role: str | None = None


def compose(mail: Mail, *, sender: str) -> EmailMessage:
    """Plain text first, with a short HTML alternative; the link is in both."""
    if mail.kind is MailKind.password_reset:
        subject, text, html = _password_reset(mail)
    else:
        subject, text, html = _invitation(mail)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = mail.to
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def _password_reset(mail: Mail) -> tuple[str, str, str]:
    subject = "Reset your Switchboard password"
    text = (
        "Someone asked to reset the password of your Switchboard account.\n\n"
        f"To choose a new password, open this link:\n{mail.link}\n\n"
        "The link works once and expires soon. If you did not ask for it, ignore this mail:"
        " your password stays as it is.\n"
    )
    html = _html(
        "Someone asked to reset the password of your Switchboard account.",
        mail.link,
        "Choose a new password",
        "The link works once and expires soon. If you did not ask for it, ignore this mail:"
        " your password stays as it is.",
    )
    return subject, text, html


def _invitation(mail: Mail) -> tuple[str, str, str]:
    tenant = mail.tenant_name or "a Switchboard workspace"
    role = mail.role or "member"
    subject = f"You are invited to join {tenant} on Switchboard"
    text = (
        f"You are invited to join {tenant} on Switchboard as {role}.\n\n"
        f"To accept, open this link:\n{mail.link}\n\n"
        "The link works once and expires. If you did not expect it, ignore this mail.\n"
    )
    html = _html(
        f"You are invited to join <strong>{escape(tenant)}</strong> on Switchboard as"
        f" <strong>{escape(role)}</strong>.",
        mail.link,
        "Accept the invitation",
        "The link works once and expires. If you did not expect it, ignore this mail.",
        intro_is_html=True,
    )
    return subject, text, html


def _html(intro: str, link: str, action: str, outro: str, *, intro_is_html: bool = False) -> str:
    shown = intro if intro_is_html else escape(intro)
    href = escape(link, quote=True)
    return (
        "<!doctype html>\n<html><body>\n"
        f"<p>{shown}</p>\n"
        f'<p><a href="{href}">{escape(action)}</a></p>\n'
        f"<p>Or paste this link into your browser:<br>{escape(link)}</p>\n"
        f"<p>{escape(outro)}</p>\n"
        "</body></html>\n"
    )


def _domain(sender: str) -> str:
    address = sender.rsplit("<", 1)[-1].rstrip(">")
    return address.rsplit("@", 1)[-1] or "switchboard.invalid"
