"""Whole-system fixtures: the API on its own connection pool, a real worker, real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from tests.support.worker import api_process, runs_worker_process

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def runs_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A worker of its own, as production runs them: the runs queue on a thread pool.
    Yields the address of its /metrics."""
    # The cancel flag is read rarely, so a run cancelled within the tests' deadlines was
    # stopped by its cancel notice.
    with runs_worker_process(
        tmp_path_factory.mktemp("runs-worker"),
        metrics=True,
        env={"RUNS_CANCEL_POLL_SECONDS": "120"},
    ) as process:
        assert process.metrics_url is not None
        yield process.metrics_url


# Module scope: the process must exit (and write its coverage data) before the session ends.
@pytest.fixture(scope="module")
def api_server(
    committed_keys: KeySnapshot,
    runs_worker: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """``python -m api`` on a free port: streams reach the client as uvicorn sends them."""
    with api_process(tmp_path_factory.mktemp("api") / "api.log") as base:
        yield base


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
    """A new tenant's owner, signed up through the first of a module's two API processes."""
    return await sign_up(apis[0])


async def chat(
    api: AsyncClient, headers: dict[str, str], message: str, **fields: Any
) -> dict[str, Any]:
    """``POST /api/v1/chat``, which must be accepted; its answer."""
    accepted = await api.post("/api/v1/chat", json={"message": message, **fields}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return dict(accepted.json())
