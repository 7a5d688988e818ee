"""What an API outside development does not show: the OpenAPI pages unless enabled, and
/metrics without its bearer token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from switchboard.kit.db import SessionMaker
from switchboard.settings import Environment, Settings
from tests.support.peers import app_serving_from, with_api

DOCS = ("/openapi.json", "/docs", "/redoc")
TOKEN = "a-metrics-token-for-prometheus"


def in_environment(settings: Settings, environment: Environment, **api: object) -> Settings:
    return with_api(settings.model_copy(update={"environment": environment}), **api)


async def docs_statuses(settings: Settings, sessionmaker: SessionMaker) -> list[int]:
    async with app_serving_from(settings, sessionmaker) as (_, client_from):
        client = client_from("203.0.113.20")
        return [(await client.get(path)).status_code for path in DOCS]


@pytest.mark.parametrize("environment", [Environment.development, Environment.test])
async def test_docs_are_served_on_a_developer_machine(
    settings: Settings, sessionmaker: SessionMaker, environment: Environment
) -> None:
    assert await docs_statuses(in_environment(settings, environment), sessionmaker) == [200] * 3


@pytest.mark.parametrize("environment", [Environment.staging, Environment.production])
async def test_docs_are_off_elsewhere_unless_enabled(
    settings: Settings, sessionmaker: SessionMaker, environment: Environment
) -> None:
    off = await docs_statuses(in_environment(settings, environment), sessionmaker)
    on = await docs_statuses(in_environment(settings, environment, docs_enabled=True), sessionmaker)

    assert off == [404] * 3
    assert on == [200] * 3


async def test_docs_can_be_turned_off_in_development(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    turned_off = in_environment(settings, Environment.development, docs_enabled=False)
    assert await docs_statuses(turned_off, sessionmaker) == [404] * 3


async def test_metrics_outside_development_without_a_token_is_not_found(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    production = in_environment(settings, Environment.production)
    async with app_serving_from(production, sessionmaker) as (_, client_from):
        response = await client_from("203.0.113.21").get("/metrics")

    assert response.status_code == 404
    assert response.json()["code"] == "http.not_found"


@pytest.mark.parametrize("environment", [Environment.test, Environment.production])
async def test_metrics_with_a_token_needs_the_bearer_token(
    settings: Settings, sessionmaker: SessionMaker, environment: Environment
) -> None:
    guarded = in_environment(settings, environment, metrics_token=SecretStr(TOKEN))
    async with app_serving_from(guarded, sessionmaker) as (_, client_from):
        client = client_from("203.0.113.22")
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        basic = await client.get("/metrics", auth=("prometheus", TOKEN))
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["code"] == "http.unauthorized"
        assert "http_requests_total" not in refused.text
    assert right.status_code == 200
    assert "http_requests_total" in right.text
