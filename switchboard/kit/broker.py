"""A RabbitMQ broker seen from outside Celery: whether it answers, for readiness and set-up
checks. py-amqp is the client Celery's own transport uses underneath; kombu stays with the
workers."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

import amqp

AMQP_PORT = 5672
AMQPS_PORT = 5671


def amqp_address(url: str) -> str:
    """``host:port`` of the broker at ``url``."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or _default_port(parts)}"


def check_amqp(url: str, *, timeout: float) -> None:
    """Opens a connection and closes it: the broker answers, takes the credentials and has
    the vhost. Blocking; each step gives up after ``timeout``."""
    parts = urlsplit(url)
    connection = amqp.Connection(
        host=amqp_address(url),
        # Read as kombu reads them: guest by default, the path (without its first slash) is
        # the vhost, and "//" or no path at all is "/".
        userid=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        virtual_host=unquote(parts.path[1:]) or "/",
        ssl=parts.scheme == "amqps",
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
    )
    try:
        connection.connect()
    except BaseException:
        connection.collect()
        raise
    connection.close()  # politely: RabbitMQ logs a connection dropped without a close


def _default_port(parts: SplitResult) -> int:
    return AMQPS_PORT if parts.scheme == "amqps" else AMQP_PORT
