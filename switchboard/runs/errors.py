from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError, NotFoundError


class RunNotFoundError(NotFoundError):
    code = "run.not_found"


class MessageTooLargeError(AppError):
    status = 413
    code = "run.message_too_large"
    title = "Content too large"


class RunFinishedError(ConflictError):
    code = "run.finished"


class InvalidLastEventIdError(AppError):
    status = 422
    code = "run.invalid_last_event_id"
    title = "Unprocessable content"


class EventsLostError(Exception):
    """Events a stream still owed its client are gone from Redis (data lost or trimmed)."""

    code = "events_lost"

    def __init__(self, run_id: str, after: int) -> None:
        super().__init__(
            f"Events after {after} of this run are no longer available; read the run and its"
            " conversation for the outcome."
        )
        self.run_id = run_id
        self.after = after


class RunsRateLimitedError(AppError):
    status = 429
    code = "runs.rate_limited"
    title = "Too many requests"


class ConcurrencyLimitedError(AppError):
    status = 429
    code = "runs.concurrency_limited"
    title = "Too many requests"


class TooManyStreamsError(AppError):
    status = 429
    code = "runs.too_many_streams"
    title = "Too many requests"


class TicketStreamsExceededError(AppError):
    status = 429
    code = "runs.ticket_streams_exceeded"
    title = "Too many requests"


class ConversationBusyError(ConflictError):
    """A chat with ``multitask_strategy`` reject into a conversation with an unfinished run."""

    code = "runs.conversation_busy"


class RunNotWaitingError(ConflictError):
    """Approvals for a run that is not waiting for any (``requires_action``)."""

    code = "run.not_waiting"


class UnknownApprovalError(AppError):
    status = 422
    code = "run.unknown_approval"
    title = "Unprocessable content"


class ApprovalDecidedError(ConflictError):
    code = "run.approval_decided"
