"""A real SMTP server (aiosmtpd) in the test process, at the port the workers send to."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import SMTP_PORT


@dataclass
class Received:
    recipients: list[str]
    message: EmailMessage


class Handler:
    """Accepts every mail, except: a recipient starting ``reject-`` is refused (550), and one
    starting ``defer-`` is deferred (451) on its first attempt."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self.attempts[address] += 1
            attempt = self.attempts[address]
        if address.startswith("reject-"):
            return f"550 5.1.1 <{address}>: no such mailbox"
        if address.startswith("defer-") and attempt == 1:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def for_recipient(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.recipients]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = Handler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, address: str, timeout: float = 30) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.handler.for_recipient(address)
            if found:
                return found[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no mail to {address} within {timeout}s")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(SMTP_PORT)
    server.start()
    try:
        yield server
    finally:
        server.stop()
