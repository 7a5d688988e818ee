"""Error base for expected outcomes; the API renders them as RFC 9457 problem documents."""

from __future__ import annotations

from typing import TypedDict


class FieldIssue(TypedDict):
    """One part of the request at fault: where (``["query", "cursor"]``), why, and a type."""

    loc: list[str | int]
    msg: str
    type: str


class AppError(Exception):
    """An expected failure with a stable machine-readable ``code``.

    Domains subclass it in their own ``errors.py``; ``status`` is the HTTP status the API
    answers with, chosen here so every adapter reports the same outcome the same way.
    ``errors``, when the fault lies in given parts of the request, names each of them.
    """

    status: int = 400
    code: str = "app.error"
    title: str = "Bad request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[FieldIssue] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.errors = errors or []


class NotFoundError(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class ConflictError(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"
