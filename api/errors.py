"""RFC 9457 problem documents for every error the API answers with."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from switchboard.kit.db import DATABASE_UNAVAILABLE
from switchboard.kit.errors import AppError

log = structlog.get_logger("switchboard.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    400: "http.bad_request",
    401: "http.unauthorized",
    403: "http.forbidden",
    404: "http.not_found",
    405: "http.method_not_allowed",
    406: "http.not_acceptable",
    409: "http.conflict",
    413: "http.payload_too_large",
    415: "http.unsupported_media_type",
    429: "http.too_many_requests",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body = {
        "type": f"urn:switchboard:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return ProblemResponse(body, status_code=status, headers=headers)


async def _app_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, AppError)
    return problem(exc.status, exc.code, exc.message, title=exc.title, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, code, detail, headers=dict(exc.headers or {}))


async def _validation_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in errors)
    return problem(422, "validation_error", f"invalid request: {fields}", errors=errors)


async def _dependency_down(request: Request, exc: Exception) -> ProblemResponse:
    # Postgres or Redis unreachable is an outage, not a bug: say so, and let clients retry.
    log.error("http.dependency_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem(
        503,
        "service_unavailable",
        "A service this request needs is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
    log.error("http.unhandled_error", path=request.url.path, exc_info=exc)
    request_id = request.scope.get("state", {}).get("request_id")
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem(500, "internal_error", "An unexpected error occurred.", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in (*DATABASE_UNAVAILABLE, RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(unavailable, _dependency_down)
    app.add_exception_handler(Exception, _unhandled)
