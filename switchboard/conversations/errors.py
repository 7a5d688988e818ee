from __future__ import annotations

from switchboard.kit.errors import ConflictError, NotFoundError


class ConversationNotFoundError(NotFoundError):
    code = "conversation.not_found"


class ConversationFullError(ConflictError):
    code = "conversation.full"
