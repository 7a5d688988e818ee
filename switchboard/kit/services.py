"""Reachability of the services a process needs, for set-up commands and start-up checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from redis.asyncio import Redis
from sqlalchemy.engine import URL

from switchboard.kit.broker import amqp_address, check_amqp
from switchboard.kit.db import database_url
from switchboard.settings import Settings

START_HINT = (
    "start them with `docker compose up -d postgres redis` (its PostgreSQL asks for"
    " POSTGRES_PASSWORD, default `postgres`, and its Redis for REDIS_PASSWORD, default"
    " `switchboard-dev`, so .env needs them in the URLs:"
    " DATABASE_URL=postgresql+psycopg://postgres:postgres@127.0.0.1:5432/switchboard,"
    " REDIS_URL=redis://:switchboard-dev@127.0.0.1:6379/0,"
    " CELERY_BROKER_URL=redis://:switchboard-dev@127.0.0.1:6379/1,"
    " CELERY_RESULT_BACKEND=redis://:switchboard-dev@127.0.0.1:6379/2;"
    " see docs/development.md), or on a Debian host: "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` and "
    '`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""`'
)
RABBITMQ = "RabbitMQ (Celery broker)"
RABBITMQ_START_HINT = (
    "start RabbitMQ with `service rabbitmq-server start` (or `rabbitmq-server -detached`), or"
    " make CELERY_BROKER_URL name a Redis database"
)


@dataclass(frozen=True)
class Unreachable:
    service: str
    where: str
    error: str

    def __str__(self) -> str:
        return f"{self.service} is not reachable at {self.where} ({self.error})"


def _conninfo(url: URL, *, database: str | None = None) -> str:
    return psycopg.conninfo.make_conninfo(
        host=url.host or "localhost",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or None,
        dbname=database or url.database or "postgres",
        connect_timeout=3,
    )


async def _postgres(settings: Settings) -> Unreachable | None:
    url = database_url(str(settings.database.url))
    try:
        conn = await psycopg.AsyncConnection.connect(_conninfo(url, database="postgres"))
        await conn.close()
    except psycopg.Error as exc:
        where = f"{url.host}:{url.port or 5432}"
        return Unreachable("PostgreSQL", where, str(exc).strip().splitlines()[0])
    return None


async def _redis(name: str, url: str) -> Unreachable | None:
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:  # redis raises several unrelated types for "cannot connect"
        parts = urlsplit(url)
        return Unreachable(name, f"{parts.hostname}:{parts.port or 6379}", type(exc).__name__)
    finally:
        await client.aclose()
    return None


async def _rabbitmq(url: str) -> Unreachable | None:
    try:
        await asyncio.to_thread(check_amqp, url, timeout=3)
    except Exception as exc:  # refused, timed out, or the broker said no (credentials, vhost)
        error = getattr(exc, "reply_text", None) or type(exc).__name__
        return Unreachable(RABBITMQ, amqp_address(url), error)
    return None


async def unreachable_services(settings: Settings) -> list[Unreachable]:
    broker = str(settings.celery.broker_url)
    results = await asyncio.gather(
        _postgres(settings),
        _redis("Redis", str(settings.redis.url)),
        _rabbitmq(broker)
        if settings.celery.amqp_broker
        else _redis("Redis (Celery broker)", broker),
    )
    return [result for result in results if result is not None]


def start_hint(down: list[Unreachable]) -> str:
    """How to start what is down."""
    hints = []
    if any(each.service != RABBITMQ for each in down):
        hints.append(START_HINT)
    if any(each.service == RABBITMQ for each in down):
        hints.append(RABBITMQ_START_HINT)
    return "; ".join(hints)


async def ensure_database(settings: Settings) -> bool:
    """Creates the database named by ``DATABASE_URL`` if it is missing; True if it did."""
    url = database_url(str(settings.database.url))
    name = url.database or "postgres"
    conn = await psycopg.AsyncConnection.connect(
        _conninfo(url, database="postgres"), autocommit=True
    )
    try:
        found = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await found.fetchone() is not None:
            return False
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
    finally:
        await conn.close()
