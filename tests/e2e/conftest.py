"""Whole-system fixtures: the API on its own connection pool, a real worker, real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from tests.support.processes import stop_all
from tests.support.worker import ApiProcess

PASSWORD = "a long enough passphrase"


# Package scope: the processes must exit (and write their coverage data) before the session
# ends. They consume no queue, so they serve every module here whatever its runs worker.
@pytest.fixture(scope="package")
def started_apis(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    """Two ``python -m api`` processes as configured by default, for every module here that
    takes no API of its own. Not waited for: a module's runs worker, started after them,
    starts up meanwhile; ``two_apis`` waits."""
    logs = tmp_path_factory.mktemp("apis")
    started: list[ApiProcess] = []
    try:
        started.append(ApiProcess(logs / "a.log"))
        started.append(ApiProcess(logs / "b.log"))
        yield started[0], started[1]
    finally:
        stop_all(list(started))


@pytest.fixture
def two_apis(started_apis: tuple[ApiProcess, ApiProcess]) -> tuple[str, str]:
    """The base URLs of the two API processes, once both answer."""
    for process in started_apis:
        process.wait()
    return started_apis[0].base, started_apis[1].base


@pytest.fixture
def api_server(two_apis: tuple[str, str]) -> str:
    """The first of the two API processes: streams reach the client as uvicorn sends them."""
    return two_apis[0]


async def sign_up(api: AsyncClient) -> dict[str, str]:
    """A new tenant and owner; the Authorization header of its access token."""
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    registered = await api.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "T"}
    )
    assert registered.status_code == 201, registered.text
    pair = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {pair.json()['access_token']}"}


@pytest.fixture
async def alice(api: AsyncClient) -> dict[str, str]:
    return await sign_up(api)


@pytest.fixture
async def bob(api: AsyncClient) -> dict[str, str]:
    return await sign_up(api)


@pytest.fixture
async def user(apis: tuple[AsyncClient, AsyncClient]) -> dict[str, str]:
    """A new tenant's owner, signed up through the first of the two API processes."""
    return await sign_up(apis[0])


async def chat(
    api: AsyncClient, headers: dict[str, str], message: str, **fields: Any
) -> dict[str, Any]:
    """``POST /api/v1/chat``, which must be accepted; its answer."""
    accepted = await api.post("/api/v1/chat", json={"message": message, **fields}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return dict(accepted.json())
