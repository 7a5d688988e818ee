"""Whatever fails inside a request, the client gets a problem document and the server gets no
exception: database errors the input caused are 4xx, anything else a 500 that says nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from api.deps import UoW
from switchboard.models import Tenant

PROBLEM = "application/problem+json"
SECRET = "value-the-client-sent-7f3a"


async def failing_teardown() -> AsyncIterator[None]:
    yield
    raise RuntimeError(SECRET)


TornDown = Annotated[None, Depends(failing_teardown)]
TornDownBeforeTheResponse = Annotated[None, Depends(failing_teardown, scope="function")]


def add_probe_routes(app: FastAPI) -> None:
    @app.post("/probe/tenants/{tenant_id}")
    async def add_tenant(tenant_id: uuid.UUID, uow: UoW) -> None:
        # Inserted by the unit of work's commit, after the route returned.
        uow.session.add(Tenant(id=tenant_id, name="probe"))

    @app.post("/probe/cast")
    async def cast(uow: UoW) -> None:
        await uow.session.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET})

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError(SECRET)

    @app.get("/probe/teardown")
    async def teardown(_: TornDown) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/probe/teardown-before-the-response")
    async def teardown_before_the_response(_: TornDownBeforeTheResponse) -> dict[str, str]:
        return {"status": "ok"}


@pytest.fixture
async def strict_client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """Raises whatever exception the app lets out, as the server would log it."""
    add_probe_routes(app)
    async with LifespanManager(app) as manager:
        transport = ASGITransport(manager.app, raise_app_exceptions=True)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def assert_silent_problem(response_text: str) -> None:
    assert SECRET not in response_text
    for leak in ("Traceback", "RuntimeError", "SELECT", "CAST", "pk_tenant", "tenant"):
        assert leak not in response_text


async def test_a_constraint_no_service_foresaw_is_a_409_conflict(
    strict_client: AsyncClient,
) -> None:
    tenant_id = uuid.uuid4()

    first = await strict_client.post(f"/probe/tenants/{tenant_id}")
    again = await strict_client.post(f"/probe/tenants/{tenant_id}")

    assert first.status_code == 200
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["code"] == "conflict"
    assert_silent_problem(again.text)


async def test_a_value_the_database_cannot_hold_is_a_422(strict_client: AsyncClient) -> None:
    response = await strict_client.post("/probe/cast")

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "invalid_value"
    assert_silent_problem(response.text)


@pytest.mark.parametrize("path", ["/probe/crash", "/probe/teardown-before-the-response"])
async def test_an_unexpected_error_is_a_500_problem_that_never_reaches_the_server(
    strict_client: AsyncClient, path: str
) -> None:
    response = await strict_client.get(path, headers={"X-Request-ID": "boundary-1"})

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "boundary-1"
    assert response.json()["code"] == "internal_error"
    assert_silent_problem(response.text)


async def test_an_error_after_the_response_went_out_is_logged_not_raised(
    strict_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await strict_client.get("/probe/teardown")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    logged = " ".join(str(record.msg) for record in caplog.records)
    assert "http.response_failed" in logged
