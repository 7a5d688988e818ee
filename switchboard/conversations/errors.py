from __future__ import annotations

from switchboard.kit.errors import AppError, NotFoundError


class ConversationNotFoundError(NotFoundError):
    code = "conversation.not_found"


class InvalidCursorError(AppError):
    status = 422
    code = "validation_error"
    title = "Unprocessable content"
