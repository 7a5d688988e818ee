"""Conversation settings: ``CONVERSATIONS_*``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ConversationSettings(BaseModel):
    max_messages: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Messages a conversation may hold; a chat into a full one gets 409"
        " conversation.full (the replies of runs already accepted are still stored).",
    )
