from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.settings import Settings
from tests.support.auth import access_header, claims_for, forge


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def client_without_redis(settings: Settings) -> AsyncIterator[AsyncClient]:
    broken = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{closed_port()}/0", "socket_timeout_seconds": 1}
            )
        }
    )
    app = create_app(broken)
    async with LifespanManager(app) as manager:
        transport = ASGITransport(manager.app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_live_answers_while_the_process_runs(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_postgres_redis_and_broker(client: AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "redis", "broker"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert check["latency_ms"] >= 0


async def test_ready_answers_503_naming_redis_when_it_is_unreachable(
    client_without_redis: AsyncClient,
) -> None:
    response = await client_without_redis.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["postgres"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


async def test_postgres_down_answers_503_not_500(
    settings: Settings, committed_keys: KeySnapshot
) -> None:
    broken = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x"}
            )
        }
    )
    assert committed_keys.signing_kid is not None
    token = forge(
        access_header(committed_keys.signing_kid), claims_for(settings), committed_keys.signing_key
    )
    app = create_app(broken)
    async with LifespanManager(app) as manager:
        transport = ASGITransport(manager.app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                "/api/v1/chat",
                json={"message": "hello"},
                headers={"Authorization": f"Bearer {token}"},
            )

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"
