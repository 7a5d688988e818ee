"""Retention settings: ``RETENTION_*``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RetentionSettings(BaseModel):
    conversation_days: int = Field(
        365,
        ge=1,
        description="Conversations (with their messages and runs) idle longer than this go;"
        " a tenant's own retention_days wins.",
    )
    login_event_days: int = Field(90, ge=1, description="Sign-in attempts kept this long.")
    stripe_event_days: int = Field(
        90, ge=1, description="Processed Stripe webhook events kept this long."
    )
    refresh_token_grace_days: int = Field(
        7, ge=0, description="Refresh tokens of ended or revoked families kept this long."
    )
    reset_token_grace_days: int = Field(
        1, ge=0, description="Expired password-reset tokens kept this long."
    )
    task_failure_days: int = Field(30, ge=1, description="Recorded task failures kept this long.")
    webhook_event_days: int = Field(
        30,
        ge=1,
        description="Outbound webhook events kept this long once delivered or given up, with"
        " their delivery log.",
    )
    batch_size: int = Field(1000, ge=1, le=50_000, description="Rows deleted per transaction.")
    max_batches: int = Field(
        200, ge=1, description="Batches per target per run; the next run goes on from there."
    )
    hour_utc: int = Field(3, ge=0, le=23, description="Hour (UTC) of the daily retention run.")
    minute: int = Field(17, ge=0, le=59, description="Minute of the daily retention run.")
