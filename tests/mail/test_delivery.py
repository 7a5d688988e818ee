"""Mail really sent: the API enqueues a sealed job after commit, a real worker delivers it to a
real SMTP server, retrying what may pass later and nothing else."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from api.main import create_app
from switchboard.kit.db import SessionMaker
from switchboard.mail.settings import SmtpSecurity, SmtpSettings
from switchboard.models import TaskFailure
from switchboard.settings import Settings
from tests.conftest import SMTP_PORT
from tests.identity.support import accept, invite, owner
from tests.mail.conftest import SmtpServer
from tests.support.app import in_test_transaction
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.usefixtures("committed_keys")

PASSWORD = "a long enough passphrase"


def mail_settings(settings: Settings) -> Settings:
    smtp = SmtpSettings(host="127.0.0.1", port=SMTP_PORT, security=SmtpSecurity.none)
    return settings.model_copy(update={"smtp": smtp})


@pytest.fixture
async def mail_client(settings: Settings, sessionmaker: SessionMaker) -> AsyncIterator[AsyncClient]:
    app: FastAPI = create_app(mail_settings(settings))
    async with in_test_transaction(app, sessionmaker) as client:
        yield client


async def register(client: AsyncClient, email: str) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "tenant_name": "Acme Corp"},
    )
    assert response.status_code == 201, response.text


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


def token_of(text: str, prefix: str) -> str:
    link = next(line for line in text.splitlines() if line.startswith(prefix))
    return parse_qs(urlsplit(link).query)["token"][0]


async def wait_for_log(worker: WorkerProcess, *needles: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(all(n in line for n in needles) for line in worker.log().splitlines()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no log line with {needles}:\n{worker.log()[-3000:]}")


async def test_reset_link_is_mailed_and_works(
    mail_client: AsyncClient, smtp_server: SmtpServer, worker: WorkerProcess, settings: Settings
) -> None:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    await register(mail_client, email)

    forgot = await mail_client.post("/api/v1/auth/password/forgot", json={"email": email})

    assert forgot.status_code == 202
    message = await smtp_server.wait_for(email)
    assert message["To"] == email
    assert message["Subject"] == "Reset your Switchboard password"
    assert message["From"] == settings.smtp.from_address
    text, html = text_and_html(message)
    token = token_of(text, settings.identity.reset_url.split("?")[0])
    assert token in html
    reset = await mail_client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "a new passphrase!"}
    )
    assert reset.status_code == 204
    login = await mail_client.post(
        "/api/v1/auth/login", json={"email": email, "password": "a new passphrase!"}
    )
    assert login.status_code == 200
    # The worker neither logged the link nor the address.
    assert token not in worker.log()
    assert email not in worker.log()


async def test_an_invitation_is_mailed_with_tenant_and_role_and_its_link_works(
    mail_client: AsyncClient, smtp_server: SmtpServer, worker: WorkerProcess, settings: Settings
) -> None:
    acme = await owner(mail_client)
    email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"

    await invite(mail_client, acme, email, "admin")

    message = await smtp_server.wait_for(email)
    assert message["To"] == email
    assert message["Subject"] == "You are invited to join Acme on Switchboard"
    text, html = text_and_html(message)
    assert "join Acme on Switchboard as admin" in text
    assert "<strong>Acme</strong>" in html
    assert "<strong>admin</strong>" in html
    token = token_of(text, settings.identity.invitation_url.split("?")[0])
    assert token in html
    accepted = await accept(mail_client, token)
    assert accepted.status_code == 200, accepted.text


async def test_unknown_email_gets_no_mail(
    mail_client: AsyncClient, smtp_server: SmtpServer, worker: WorkerProcess
) -> None:
    known, unknown = (f"user-{uuid.uuid4().hex[:10]}@example.com" for _ in range(2))
    await register(mail_client, known)

    first = await mail_client.post("/api/v1/auth/password/forgot", json={"email": unknown})
    second = await mail_client.post("/api/v1/auth/password/forgot", json={"email": known})

    assert first.status_code == second.status_code == 202
    await smtp_server.wait_for(known)  # sent after the first request: that one sent nothing
    assert smtp_server.handler.attempts[unknown] == 0


async def test_server_down_then_up_is_retried_and_delivered(
    mail_client: AsyncClient, smtp_server: SmtpServer, worker: WorkerProcess
) -> None:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    await register(mail_client, email)
    smtp_server.stop()
    try:
        forgot = await mail_client.post("/api/v1/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202
        await wait_for_log(worker, "task.retry", "mail.send", "Connect")
    finally:
        smtp_server.start()

    message = await smtp_server.wait_for(email, timeout=60)
    assert message["To"] == email
    assert smtp_server.handler.attempts[email] == 1


async def test_a_deferral_is_retried_and_delivered(
    mail_client: AsyncClient, smtp_server: SmtpServer, worker: WorkerProcess
) -> None:
    email = f"defer-{uuid.uuid4().hex[:10]}@example.com"
    await register(mail_client, email)

    await mail_client.post("/api/v1/auth/password/forgot", json={"email": email})

    await smtp_server.wait_for(email, timeout=60)
    assert smtp_server.handler.attempts[email] == 2


async def test_a_refusal_is_not_retried_and_its_record_holds_no_link(
    mail_client: AsyncClient,
    smtp_server: SmtpServer,
    worker: WorkerProcess,
    sessionmaker: SessionMaker,
) -> None:
    email = f"reject-{uuid.uuid4().hex[:10]}@example.com"
    await register(mail_client, email)

    await mail_client.post("/api/v1/auth/password/forgot", json={"email": email})

    failure = await wait_for_failure(sessionmaker, email)
    assert failure.exception_type == "UndeliverableMailError"
    assert failure.retries == 0
    stored = json.dumps([failure.call_args, failure.call_kwargs])
    assert email not in stored
    assert "token" not in stored
    await asyncio.sleep(3)  # a retry would have come back by now
    assert smtp_server.handler.attempts[email] == 1


async def wait_for_failure(sessionmaker: SessionMaker, email: str) -> TaskFailure:
    deadline = time.monotonic() + 30
    query = select(TaskFailure).where(
        TaskFailure.task_name == "mail.send", TaskFailure.message.contains(email)
    )
    while time.monotonic() < deadline:
        async with sessionmaker() as session:
            row = await session.scalar(query)
        if row is not None:
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"no failure recorded for {email}")
