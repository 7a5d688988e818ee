"""Every response says ``nosniff``; those sent over TLS also carry HSTS."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient

from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.peers import app_serving_from

HSTS = "max-age=63072000; includeSubDomains"


def add_crash_route(app: FastAPI) -> None:
    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("boom")


async def test_every_response_says_nosniff(app: FastAPI, client: AsyncClient) -> None:
    add_crash_route(app)
    answers = {
        "ok": await client.get("/health/live"),
        "not found": await client.get("/nowhere"),
        "unauthorized": await client.get("/api/v1/conversations"),
        "crashed": await client.get("/probe/crash"),
        "openapi": await client.get("/openapi.json"),
    }

    assert {name: r.status_code for name, r in answers.items()} == {
        "ok": 200,
        "not found": 404,
        "unauthorized": 401,
        "crashed": 500,
        "openapi": 200,
    }
    for name, response in answers.items():
        assert response.headers.get("x-content-type-options") == "nosniff", name
        assert "strict-transport-security" not in response.headers, name


async def test_responses_over_tls_carry_hsts(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    async with app_serving_from(settings, sessionmaker) as (app, client_from):
        add_crash_route(app)
        over_tls = client_from("203.0.113.8", "https")
        answers = [
            await over_tls.get("/health/live"),
            await over_tls.get("/nowhere"),
            await over_tls.get("/probe/crash"),
        ]
        plain = await client_from("203.0.113.8", "http").get("/health/live")

    assert [r.status_code for r in answers] == [200, 404, 500]
    for response in answers:
        assert response.headers["strict-transport-security"] == HSTS
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in plain.headers
