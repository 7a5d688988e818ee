from __future__ import annotations

import enum
import uuid
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from switchboard.kit.text import InputModel


class MultitaskStrategy(enum.StrEnum):
    """What a chat does to a conversation that already has an unfinished run."""

    reject = "reject"
    enqueue = "enqueue"
    interrupt = "interrupt"
    rollback = "rollback"


class ChatRequest(InputModel):
    # The configured limit (RUNS_MAX_MESSAGE_CHARS) answers 413; this bound only keeps absurd
    # bodies from being parsed as text at all.
    message: str = Field(min_length=1)
    conversation_id: uuid.UUID | None = None
    agent: str | None = Field(None, min_length=1, max_length=64)
    multitask_strategy: MultitaskStrategy = Field(
        MultitaskStrategy.enqueue,
        description=(
            "For a conversation with a queued or running run: reject (409), enqueue (start"
            " after it), interrupt (stop it, keeping what it said) or rollback (stop it and"
            " remove it with its message)."
        ),
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value


class ApprovalDecision(InputModel):
    id: uuid.UUID = Field(description="The approval's id, from run.requires_action.")
    approve: bool
    reason: str | None = Field(
        None, max_length=2000, description="Told to the agent when the call is rejected."
    )


class ApprovalDecisions(InputModel):
    decisions: list[ApprovalDecision] = Field(min_length=1, max_length=100)


class ChatAccepted(BaseModel):
    run_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    stream_url: str


class Usage(BaseModel):
    """The tokens of every model call of a run, as the provider reported them."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = Field(
        0, description="Of input_tokens, those the provider read from its prompt cache."
    )


class RunError(BaseModel):
    code: str
    message: str


class RunRead(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    agent: str
    usage: Usage
    error: RunError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class StreamTicketRead(BaseModel):
    stream_url: str
    expires_at: datetime
