from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError


class InvalidTokenError(AppError):
    """Any token we cannot accept. The reason is logged and counted, never told to the caller."""

    status = 401
    code = "auth.invalid_token"
    title = "Unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(
            "The token is missing, malformed, expired or not valid here.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
        self.reason = reason


class UnknownKeyError(InvalidTokenError):
    """The token names a key this process does not know (yet): reload the key set once."""


class ForbiddenError(AppError):
    status = 403
    code = "auth.forbidden"
    title = "Forbidden"


class NoSigningKeyError(AppError):
    status = 503
    code = "auth.no_signing_key"
    title = "Service unavailable"


class CutoverRefusedError(ConflictError):
    code = "auth.keys.cutover_refused"
