from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError, NotFoundError


class RunNotFoundError(NotFoundError):
    code = "run.not_found"


class ConversationNotFoundError(NotFoundError):
    code = "conversation.not_found"


class MessageTooLargeError(AppError):
    status = 413
    code = "run.message_too_large"
    title = "Content too large"


class RunFinishedError(ConflictError):
    code = "run.finished"


class InvalidCursorError(AppError):
    status = 422
    code = "validation_error"
    title = "Unprocessable content"


class InvalidLastEventIdError(AppError):
    status = 422
    code = "run.invalid_last_event_id"
    title = "Unprocessable content"
