"""RFC 9457 problem documents for every error the API answers with."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.kit.db import DATABASE_UNAVAILABLE, violated_constraint
from switchboard.kit.errors import AppError

log = structlog.get_logger("switchboard.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
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


class ValidationIssue(BaseModel):
    """One part of the request that failed validation."""

    loc: list[str | int] = Field(
        description="`body`, `query`, `path` or `header`, then the field's name (and index)."
    )
    msg: str
    type: str


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error the API answers."""

    type: str = Field(description="`urn:switchboard:problem:<code>`.")
    title: str
    status: int
    detail: str = Field(description="A sentence for humans.")
    code: str = Field(description="Stable and machine-readable: branch on it.")
    # Absent rather than null: SkipJsonSchema keeps None out of the document.
    errors: list[ValidationIssue] | SkipJsonSchema[None] = Field(
        None,
        description="On `validation_error`: each part of the request that failed.",
        json_schema_extra=_no_default,
    )


# The statuses the API answers on its own, whatever the route: the code each is answered with.
_API_PROBLEMS = {
    413: "http.payload_too_large",
    422: "validation_error",
    503: "service_unavailable",
}
# Where the OpenAPI document keeps a model's schema (api.openapi puts Problem there).
SCHEMA_REF_TEMPLATE = "#/components/schemas/{model}"


def problem_responses(*answers: int | type[AppError]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or a router: the statuses it answers besides success, each
    a problem document, described by the codes it comes with. An answer is a domain error
    (its status and code) or a status the API answers on its own (413, 422, 503)."""
    codes: dict[int, list[str]] = {}
    for answer in answers:
        if isinstance(answer, int):
            status, code = answer, _API_PROBLEMS[answer]
        else:
            status, code = answer.status, answer.code
        codes.setdefault(status, [])
        if code not in codes[status]:
            codes[status].append(code)
    return {
        status: {
            "description": f"{HTTPStatus(status).phrase}: "
            + ", ".join(f"`{code}`" for code in listed),
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": SCHEMA_REF_TEMPLATE.format(model="Problem")}
                }
            },
        }
        for status, listed in sorted(codes.items())
    }


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
    extra = {"errors": exc.errors} if exc.errors else {}
    return problem(exc.status, exc.code, exc.message, title=exc.title, headers=exc.headers, **extra)


async def _http_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return _unreadable_body(exc)
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


def _unreadable_body(exc: StarletteHTTPException) -> ProblemResponse:
    # FastAPI and Starlette raise 400 only for a body they cannot read as its Content-Type
    # says (not UTF-8, a broken form): to a client, a body that fails validation like any other.
    if isinstance(exc.__cause__, UnicodeDecodeError):
        reason = "The body is not valid UTF-8."
    elif exc.__cause__ is None and isinstance(exc.detail, str):
        reason = exc.detail  # Starlette's own sentence about a malformed form
    else:
        reason = "The body cannot be read as its Content-Type says."
    errors = [{"loc": ["body"], "msg": reason, "type": "body_unreadable"}]
    return problem(422, "validation_error", "invalid request: body", errors=errors)


async def _dependency_down(request: Request, exc: Exception) -> ProblemResponse:
    # Postgres or Redis unreachable is an outage, not a bug: say so, and let clients retry.
    log.error("http.dependency_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem(
        503,
        "service_unavailable",
        "A service this request needs is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


async def _integrity_error(request: Request, exc: Exception) -> ProblemResponse:
    # A constraint the domain did not foresee, most often a race two requests ran against a
    # unique index: the request conflicts with the data's state. The constraint name is logged,
    # never answered (it names tables and columns).
    assert isinstance(exc, IntegrityError)
    log.warning(
        "http.integrity_error",
        path=request.url.path,
        sqlstate=_sqlstate(exc),
        constraint=violated_constraint(exc),
    )
    return problem(409, "conflict", "The request conflicts with the current state of the resource.")


async def _data_error(request: Request, exc: Exception) -> ProblemResponse:
    # A value the database cannot hold (out of range, not of the column's type): the input.
    assert isinstance(exc, DataError)
    log.warning("http.data_error", path=request.url.path, sqlstate=_sqlstate(exc))
    return problem(422, "invalid_value", "A value in the request cannot be stored.")


async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
    log.error("http.unhandled_error", path=request.url.path, exc_info=exc)
    request_id = request.scope.get("state", {}).get("request_id")
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem(500, "internal_error", "An unexpected error occurred.", headers=headers)


class ErrorBoundary:
    """Around the routes: an exception no handler took becomes the 500 problem document here,
    so it never reaches the server. Once the response has started it can only be logged; the
    connection is then closed with the body cut short, which a client can tell from an end.

    Starlette's own last resort answers the same document but raises the exception on to the
    server, which logs it a second time; it still covers the middleware outside this one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                log.error("http.response_failed", path=scope["path"], exc_info=exc)
                return
            response = await _unhandled(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Call before adding any other middleware, so the boundary sits right around the routes."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for unavailable in (*DATABASE_UNAVAILABLE, RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(unavailable, _dependency_down)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unhandled)
    app.add_middleware(ErrorBoundary)
