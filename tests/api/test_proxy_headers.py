"""X-Forwarded-For and X-Forwarded-Proto count only when the connection comes from a proxy in
API_TRUSTED_PROXIES: anyone else cannot choose the address the per-IP limits see."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from httpx import AsyncClient, Response

from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.peers import app_serving_from, with_api
from tests.support.processes import free_port, serving

PROXIES = ["10.0.0.0/8", "fd00::/8"]
PROXY = "10.20.30.40"
LIMIT = 5
ATTEMPTS = 40


def new_ip() -> str:
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def login_limited(settings: Settings, *, trusted_proxies: list[str]) -> Settings:
    # A window far longer than the test, so no count restarts half-way.
    identity = settings.identity.model_copy(
        update={"login_ip_max_attempts": LIMIT, "login_ip_window_seconds": 3600}
    )
    limited = settings.model_copy(update={"identity": identity})
    return with_api(limited, trusted_proxies=trusted_proxies)


async def failed_login(client: AsyncClient, forwarded_for: str) -> Response:
    return await client.post(
        "/api/v1/auth/login",
        json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        headers={"X-Forwarded-For": forwarded_for},
    )


def add_client_probe(app: FastAPI) -> None:
    @app.get("/probe/client")
    async def client(request: Request) -> dict[str, str | None]:
        return {
            "host": request.client.host if request.client else None,
            "scheme": request.url.scheme,
        }


async def test_forwarded_for_from_a_peer_without_trusted_proxies_is_ignored(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(login_limited(settings, trusted_proxies=[]), sessionmaker) as (
        _,
        client_from,
    ):
        attacker = client_from(new_ip())
        statuses = [(await failed_login(attacker, new_ip())).status_code for _ in range(ATTEMPTS)]

    assert statuses == [401] * LIMIT + [429] * (ATTEMPTS - LIMIT)


async def test_forwarded_for_from_a_peer_outside_the_trusted_proxies_is_ignored(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(login_limited(settings, trusted_proxies=PROXIES), sessionmaker) as (
        app,
        client_from,
    ):
        add_client_probe(app)
        attacker = client_from("203.0.113.50", "http")
        statuses = [(await failed_login(attacker, new_ip())).status_code for _ in range(ATTEMPTS)]
        seen = await attacker.get(
            "/probe/client",
            headers={"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"},
        )

    assert statuses == [401] * LIMIT + [429] * (ATTEMPTS - LIMIT)
    assert seen.json() == {"host": "203.0.113.50", "scheme": "http"}


async def test_a_trusted_proxy_names_each_client(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(login_limited(settings, trusted_proxies=PROXIES), sessionmaker) as (
        _,
        client_from,
    ):
        proxy = client_from(PROXY)
        many_clients = [(await failed_login(proxy, new_ip())).status_code for _ in range(ATTEMPTS)]
        one = new_ip()
        one_client = [(await failed_login(proxy, one)).status_code for _ in range(LIMIT + 1)]

    assert many_clients == [401] * ATTEMPTS  # each address has its own count
    assert one_client == [401] * LIMIT + [429]


async def test_the_client_is_the_right_most_address_outside_the_trusted_proxies(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(with_api(settings, trusted_proxies=PROXIES), sessionmaker) as (
        app,
        client_from,
    ):
        add_client_probe(app)
        proxy = client_from("fd00::7")
        # The left-most entry is whatever the client sent; the proxies appended the rest.
        chained = await proxy.get(
            "/probe/client", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.5"}
        )
        only_proxies = await proxy.get(
            "/probe/client", headers={"X-Forwarded-For": "10.1.1.1, 10.0.0.5"}
        )
        without_header = await proxy.get("/probe/client")

    assert chained.json()["host"] == "203.0.113.9"
    assert only_proxies.json()["host"] == "10.1.1.1"
    assert without_header.json()["host"] == "fd00::7"


async def test_forwarded_proto_from_a_trusted_proxy_sets_the_scheme(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(with_api(settings, trusted_proxies=PROXIES), sessionmaker) as (
        app,
        client_from,
    ):
        add_client_probe(app)
        proxy = client_from(PROXY)
        behind_tls = await proxy.get("/probe/client", headers={"X-Forwarded-Proto": "https"})
        plain = await proxy.get("/probe/client", headers={"X-Forwarded-Proto": "http"})

    assert behind_tls.json()["scheme"] == "https"
    assert behind_tls.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert plain.json()["scheme"] == "http"
    assert "strict-transport-security" not in plain.headers


@pytest.mark.usefixtures("migrated_database")
def test_the_served_api_ignores_forwarded_headers_whatever_uvicorn_is_told(
    tmp_path: Path,
) -> None:
    """``python -m api`` under FORWARDED_ALLOW_IPS="*", which uvicorn would obey with
    proxy_headers on: 40 failed logins, each claiming another address, still hit the limit of
    the address they come from."""
    port = free_port()
    env = {
        "API_PORT": str(port),
        "FORWARDED_ALLOW_IPS": "*",
        "IDENTITY_LOGIN_IP_MAX_ATTEMPTS": str(LIMIT),
        "IDENTITY_LOGIN_IP_WINDOW_SECONDS": "3600",
    }
    # A loopback address of this test alone, so no other test's logins share its count.
    peer = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    url = f"http://127.0.0.1:{port}"
    with (
        serving("api", env, f"{url}/health/live", tmp_path / "api.log"),
        httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=peer)) as client,
    ):
        statuses = [
            client.post(
                "/api/v1/auth/login",
                json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
                headers={"X-Forwarded-For": new_ip()},
            ).status_code
            for _ in range(ATTEMPTS)
        ]

    assert statuses == [401] * LIMIT + [429] * (ATTEMPTS - LIMIT)
