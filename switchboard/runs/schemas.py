from __future__ import annotations

import enum
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from switchboard.kit.text import InputModel

# The examples of the OpenAPI document (/docs, /redoc) follow the run of docs/streaming.md.
_RUN_ID = "8749bc8c-b170-45ad-a1f9-8df3f03cdd25"
_CONVERSATION_ID = "447cf61f-f664-41a0-9ea0-1d3d877f5c14"
_STREAM_URL = (
    f"/api/v1/runs/{_RUN_ID}/stream?ticket=eyJhbGciOiJFZERTQSIsInR5cCI6InN0K2p3dCJ9"
    ".eyJydW4iOiI4NzQ5YmM4Yy1iMTcwLTQ1YWQtYTFmOS04ZGYzZjAzY2RkMjUifQ.c2lnbmF0dXJl"
)


class MultitaskStrategy(enum.StrEnum):
    """What a chat does to a conversation that already has an unfinished run."""

    reject = "reject"
    enqueue = "enqueue"
    interrupt = "interrupt"
    rollback = "rollback"


class ChatRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"message": "please check my invoice"},
                {
                    "message": "and the one before?",
                    "conversation_id": _CONVERSATION_ID,
                    "agent": "billing",
                    "multitask_strategy": "enqueue",
                },
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "decisions": [
                        {"id": "1c9e4b7a-3f2d-4e8b-a6c5-0d1e2f3a4b5c", "approve": True},
                        {
                            "id": "6a2f8d1e-9b3c-4f7a-8e5d-2c1b0a9f8e7d",
                            "approve": False,
                            "reason": "Ask the customer before cancelling.",
                        },
                    ]
                }
            ]
        }
    )

    decisions: list[ApprovalDecision] = Field(min_length=1, max_length=100)


class ChatAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": _RUN_ID,
                    "conversation_id": _CONVERSATION_ID,
                    "status": "queued",
                    "stream_url": _STREAM_URL,
                }
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _RUN_ID,
                    "conversation_id": _CONVERSATION_ID,
                    "status": "succeeded",
                    "agent": "billing",
                    "usage": {"input_tokens": 11, "output_tokens": 5, "cached_input_tokens": 0},
                    "error": None,
                    "created_at": "2026-12-03T09:41:07.120000Z",
                    "started_at": "2026-12-03T09:41:07.180000Z",
                    "finished_at": "2026-12-03T09:41:08.020000Z",
                }
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"stream_url": _STREAM_URL, "expires_at": "2026-12-03T09:42:07Z"}]
        }
    )

    stream_url: str
    expires_at: datetime
