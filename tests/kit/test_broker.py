"""A RabbitMQ broker's reachability and the readiness check that uses it, against the
machine's RabbitMQ."""

from __future__ import annotations

import socket
import time

import amqp
import pytest

from switchboard.kit.broker import amqp_address, check_amqp
from switchboard.kit.health import check_readiness
from switchboard.kit.resources import open_resources
from switchboard.settings import AmqpBrokerDsn, Settings
from tests.support.rabbitmq import RabbitMQ, Vhost, on_rabbitmq


@pytest.fixture(scope="module")
def vhost(rabbitmq: RabbitMQ) -> Vhost:
    return rabbitmq.vhost()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_addresses_default_as_kombu_reads_them() -> None:
    assert amqp_address("amqp://guest:guest@rabbit.internal//") == "rabbit.internal:5672"
    assert amqp_address("amqps://rabbit.internal/switchboard") == "rabbit.internal:5671"
    assert amqp_address("pyamqp://10.0.0.7:5673") == "10.0.0.7:5673"


def test_a_broker_that_answers_passes(vhost: Vhost) -> None:
    check_amqp(vhost.url, timeout=2)


def test_a_missing_vhost_or_a_wrong_password_fails(vhost: Vhost) -> None:
    with pytest.raises(amqp.NotAllowed, match="not found"):
        check_amqp(f"{vhost.url}-missing", timeout=2)
    with pytest.raises(amqp.AccessRefused):
        check_amqp(vhost.url.replace("guest:guest@", "guest:wrong@"), timeout=2)


async def test_readiness_checks_a_rabbitmq_broker(
    settings: Settings, vhost: Vhost, migrated_database: str
) -> None:
    async with open_resources(on_rabbitmq(settings, vhost), application_name="test") as resources:
        assert resources.broker_redis is None  # no Redis client for a broker that is not one
        readiness = await check_readiness(resources)

    assert readiness.ok, readiness
    assert set(readiness.checks) == {"postgres", "redis", "broker"}
    assert readiness.checks["broker"].latency_ms >= 0


async def test_readiness_names_a_rabbitmq_broker_that_is_away(
    settings: Settings, migrated_database: str
) -> None:
    away = settings.celery.model_copy(
        update={"broker_url": AmqpBrokerDsn(f"amqp://guest:guest@127.0.0.1:{closed_port()}//")}
    )
    async with open_resources(
        settings.model_copy(update={"celery": away}), application_name="test"
    ) as resources:
        started = time.monotonic()
        readiness = await check_readiness(resources)

    assert time.monotonic() - started < settings.health.check_timeout_seconds + 1
    assert readiness.status == "error"
    assert readiness.checks["broker"].ok is False
    assert readiness.checks["broker"].error == "ConnectionRefusedError"
    assert readiness.checks["postgres"].ok is True
    assert readiness.checks["redis"].ok is True
