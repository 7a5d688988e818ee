"""RabbitMQ for the tests of the AMQP broker: the machine's server, a vhost of their own per
module that asks for one (created with rabbitmqctl, deleted when the session ends).

Unreachable, the tests that need it fail saying how to start it: RabbitMQ is a supported
broker, so its tests never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import amqp
import pytest
from kombu import Connection

from switchboard.kit.broker import amqp_address, check_amqp
from switchboard.settings import AmqpBrokerDsn, RedisDsn, Settings

# The server: host, port and credentials, without a vhost.
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
START_HINT = (
    "start it with `service rabbitmq-server start` (or `rabbitmq-server -detached`), or name"
    " another server in TEST_RABBITMQ_URL"
)


@dataclass(frozen=True)
class Vhost:
    name: str
    url: str
    """``CELERY_BROKER_URL`` for this vhost."""

    def queue_types(self) -> dict[str, str]:
        """Every queue of the vhost and its type (classic, quorum), as the server says."""
        listed = _rabbitmqctl("list_queues", "-p", self.name, "name", "type", "--formatter=json")
        return {queue["name"]: queue["type"] for queue in json.loads(listed)}

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue``: not delivered to a consumer (or given back)."""
        return self._declared(queue)[1]

    def consumers(self, queue: str) -> int:
        return self._declared(queue)[2]

    def _declared(self, queue: str) -> tuple[str, int, int]:
        with Connection(self.url, connect_timeout=5) as connection:
            channel = cast(amqp.Channel, connection.channel())
            declared = channel.queue_declare(queue=queue, passive=True)
        assert declared is not None
        return declared


class RabbitMQ:
    def __init__(self) -> None:
        self._created: list[str] = []

    def vhost(self) -> Vhost:
        """A new, empty vhost the server's user may use entirely."""
        name = f"switchboard_test_{uuid.uuid4().hex[:8]}"
        _rabbitmqctl("add_vhost", name)
        self._created.append(name)
        user = urlsplit(RABBITMQ_URL).username or "guest"
        _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        return Vhost(name, f"{RABBITMQ_URL}/{name}")

    def delete_all(self) -> None:
        for name in self._created:
            _rabbitmqctl("delete_vhost", name)


def _rabbitmqctl(*args: str) -> str:
    command = shutil.which("rabbitmqctl")
    if command is None:
        pytest.fail("rabbitmqctl is not installed: the RabbitMQ tests make their vhosts with it")
    done = subprocess.run(
        [command, "--quiet", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        error = (done.stderr or done.stdout).strip()
        pytest.fail(f"`rabbitmqctl {' '.join(args)}` failed: {error}; {START_HINT}")
    return done.stdout


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    """The server, answering, or the test fails with how to start it."""
    try:
        check_amqp(f"{RABBITMQ_URL}//", timeout=5)
    except Exception as exc:
        error = getattr(exc, "reply_text", None) or type(exc).__name__
        pytest.fail(
            f"RabbitMQ is not reachable at {amqp_address(RABBITMQ_URL)} ({error}): {START_HINT}"
        )
    server = RabbitMQ()
    yield server
    server.delete_all()


def on_rabbitmq(settings: Settings, vhost: Vhost, *, redis_url: str | None = None) -> Settings:
    """``settings`` with the broker at ``vhost`` (and Redis at ``redis_url``, if given)."""
    update: dict[str, object] = {
        "celery": settings.celery.model_copy(update={"broker_url": AmqpBrokerDsn(vhost.url)})
    }
    if redis_url is not None:
        update["redis"] = settings.redis.model_copy(update={"url": RedisDsn(redis_url)})
    return settings.model_copy(update=update)
