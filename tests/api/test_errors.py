"""Every error is an RFC 9457 problem document, and none carries a traceback."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import BaseModel, Field

from api.errors import Problem
from switchboard.kit.errors import ConflictError
from switchboard.settings import Settings

PROBLEM = "application/problem+json"


class Widget(BaseModel):
    name: str = Field(min_length=1)
    size: int


def add_probe_routes(app: FastAPI) -> None:
    @app.post("/probe/widgets")
    async def create_widget(widget: Widget) -> Widget:
        return widget

    @app.get("/probe/conflict")
    async def conflict() -> None:
        raise ConflictError("widget already exists", code="widget.exists")

    @app.get("/probe/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail")


async def test_unknown_path_is_a_404_problem(client: AsyncClient) -> None:
    response = await client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 404
    assert body["code"] == "http.not_found"
    assert {"type", "title", "detail"} <= set(body)


async def test_wrong_method_is_a_405_problem(client: AsyncClient) -> None:
    response = await client.delete("/health/live")
    assert response.status_code == 405
    assert response.json()["code"] == "http.method_not_allowed"


async def test_validation_error_is_a_422_problem_listing_fields(
    app: FastAPI, client: AsyncClient
) -> None:
    add_probe_routes(app)
    response = await client.post("/probe/widgets", json={"name": "", "size": "big"})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == "validation_error"
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert locations == {("body", "name"), ("body", "size")}
    assert "body.name" in body["detail"]


async def test_malformed_json_is_a_422_problem(app: FastAPI, client: AsyncClient) -> None:
    add_probe_routes(app)
    response = await client.post(
        "/probe/widgets", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_app_errors_keep_their_status_and_code(app: FastAPI, client: AsyncClient) -> None:
    add_probe_routes(app)
    response = await client.get("/probe/conflict")

    assert response.status_code == 409
    assert response.json()["code"] == "widget.exists"
    assert response.json()["detail"] == "widget already exists"


async def test_unhandled_error_is_a_500_problem_without_traceback(
    app: FastAPI, client: AsyncClient
) -> None:
    add_probe_routes(app)
    response = await client.get("/probe/crash", headers={"X-Request-ID": "crash-1"})

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "crash-1"
    body = response.json()
    assert body["code"] == "internal_error"
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


async def test_request_id_is_echoed_or_made(client: AsyncClient) -> None:
    echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    made = await client.get("/health/live")
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})

    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_body_over_the_limit_is_a_413_problem(
    app: FastAPI, client: AsyncClient, settings: Settings
) -> None:
    add_probe_routes(app)
    limit = settings.api.max_body_bytes
    oversized = b'{"name": "' + b"x" * (limit + 1) + b'", "size": 1}'

    declared = await client.post(
        "/probe/widgets", content=oversized, headers={"content-type": "application/json"}
    )

    async def chunks():  # no Content-Length: the limit must hold on the streamed body too
        for start in range(0, len(oversized), 65536):
            yield oversized[start : start + 65536]

    streamed = await client.post(
        "/probe/widgets", content=chunks(), headers={"content-type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "http.payload_too_large"


async def test_a_body_that_is_not_utf8_is_a_422_problem(client: AsyncClient) -> None:
    # Read before the token is checked: the body is refused as it is, signed in or not.
    response = await client.post(
        "/api/v1/chat",
        content=b'{"message": "\xff\xfe caf\xe9"}',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = Problem.model_validate(response.json())
    assert problem.code == "validation_error"
    assert problem.errors is not None
    assert [(issue.loc, issue.msg) for issue in problem.errors] == [
        (["body"], "The body is not valid UTF-8.")
    ]


async def test_a_form_that_cannot_be_parsed_is_a_422_problem(client: AsyncClient) -> None:
    broken = await client.post(
        "/api/v1/auth/token",
        content=b"\xff\xfe--not multipart",
        headers={"content-type": "multipart/form-data"},  # no boundary
    )
    # A form route sent JSON (not UTF-8 either) reads no form: its fields are missing.
    not_a_form = await client.post(
        "/api/v1/auth/token",
        content=b'{"username": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )

    for response in (broken, not_a_form):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        problem = Problem.model_validate(response.json())
        assert problem.code == "validation_error"
    assert broken.json()["errors"] == [
        {"loc": ["body"], "msg": "Missing boundary in multipart.", "type": "body_unreadable"}
    ]
