"""The Celery app on a RabbitMQ broker: its configuration, the queue-length metric and the
sender, against the machine's RabbitMQ (a vhost of this module's own). Whole-system runs on
RabbitMQ are in tests/e2e/test_rabbitmq.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import cast

import amqp
import pytest
from celery import Celery
from kombu import Connection

from switchboard.kit.jobs import Job
from switchboard.settings import Settings
from tests.support.rabbitmq import RabbitMQ, Vhost, on_rabbitmq
from workers.celery_app import QUEUES, DeclareQueues, create_celery
from workers.metrics import QueueLengths
from workers.sender import CeleryJobSender


@pytest.fixture(scope="module")
def vhost(rabbitmq: RabbitMQ) -> Vhost:
    return rabbitmq.vhost()


@pytest.fixture
def amqp_app(
    settings: Settings, vhost: Vhost, celery_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Celery]:
    """The production app as configured for RabbitMQ; the session's app stays Celery's
    current one."""
    # Celery reads the variable before its configuration, as the settings do.
    monkeypatch.setenv("CELERY_BROKER_URL", vhost.url)
    app = create_celery(on_rabbitmq(settings, vhost))
    celery_app.set_current()
    yield app
    app.close()


def test_on_rabbitmq_runs_is_a_quorum_queue_and_publishes_are_confirmed(
    amqp_app: Celery, settings: Settings
) -> None:
    conf = amqp_app.conf

    assert conf.broker_transport_options == {"confirm_publish": True}
    assert not conf.result_backend_transport_options  # no visibility timeout to agree on
    queues = {queue.name: queue for queue in conf.task_queues}
    assert set(queues) == set(QUEUES)
    assert queues["runs"].queue_arguments == {"x-queue-type": "quorum"}
    assert all(queues[name].queue_arguments is None for name in set(QUEUES) - {"runs"})
    # Native delayed delivery forwards only to topic and fanout exchanges.
    assert {queue.exchange.type for queue in queues.values()} == {"topic"}
    assert conf.worker_detect_quorum_queues is True
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    # RedBeat needs Redis: the application's.
    assert conf.redbeat_redis_url == str(settings.redis.url)
    assert DeclareQueues in amqp_app.steps["worker"]


def test_on_redis_the_app_is_configured_as_ever(celery_app: Celery, settings: Settings) -> None:
    conf = celery_app.conf
    visibility = {"visibility_timeout": settings.celery.visibility_timeout_seconds}

    assert str(settings.celery.broker_url).startswith("redis://")
    assert conf.broker_transport_options == visibility
    assert conf.result_backend_transport_options == visibility
    assert conf.redbeat_redis_url == str(settings.celery.broker_url)
    assert conf.get("redbeat_redis_options") is None
    assert {queue.exchange.type for queue in conf.task_queues} == {"direct"}
    assert all(queue.queue_arguments is None for queue in conf.task_queues)
    assert DeclareQueues not in celery_app.steps["worker"]


def _declare(app: Celery) -> None:
    """What a worker's DeclareQueues step does when it starts."""
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            queue.bind(connection.default_channel).declare()


def test_queue_lengths_are_read_from_rabbitmq(amqp_app: Celery, vhost: Vhost) -> None:
    _declare(amqp_app)
    before = vhost.ready("runs")
    for _ in range(3):
        amqp_app.send_task("tests.nobody", queue="runs")
    amqp_app.send_task("tests.nobody", queue="webhooks")

    collector = QueueLengths(vhost.url, [*QUEUES, "never-declared"])
    [family] = list(collector.collect())
    lengths = {sample.labels["queue"]: sample.value for sample in family.samples}

    assert family.name == "celery_queue_length"
    assert lengths["runs"] - before == 3
    assert lengths["webhooks"] >= 1
    assert lengths["never-declared"] == 0
    types = vhost.queue_types()
    assert (types["runs"], types["webhooks"], types["default"]) == ("quorum", "classic", "classic")


def test_queue_lengths_say_nothing_while_rabbitmq_is_away() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]

    collector = QueueLengths(f"amqp://guest:guest@127.0.0.1:{closed}//", QUEUES)

    assert list(collector.collect()) == []


async def test_the_sender_keeps_the_jobs_order_on_rabbitmq(amqp_app: Celery, vhost: Vhost) -> None:
    """Jobs say 0 for first; RabbitMQ serves the highest priority first."""
    _declare(amqp_app)
    queue = "maintenance"  # nothing consumes it here
    sender = CeleryJobSender(amqp_app)
    await sender.send([Job("tests.nobody", queue=queue, priority=p) for p in (0, 6, None)])

    def received() -> list[int | None]:
        with Connection(vhost.url) as connection:
            channel = cast(amqp.Channel, connection.channel())
            taken = [channel.basic_get(queue, no_ack=True) for _ in range(3)]
        return [message.properties.get("priority") for message in taken if message]

    assert await asyncio.to_thread(received) == [9, 3, None]
