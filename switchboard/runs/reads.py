"""A run as the API and its webhooks show it."""

from __future__ import annotations

from switchboard.models import Run
from switchboard.runs.schemas import RunError, RunRead, Usage


def run_read(run: Run) -> RunRead:
    error = (
        RunError(code=run.error_code, message=run.error_message or "")
        if run.error_code is not None
        else None
    )
    return RunRead(
        id=run.id,
        conversation_id=run.conversation_id,
        status=run.status,
        agent=run.final_agent or run.entry_agent,
        usage=usage_of(run),
        error=error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def usage_of(run: Run) -> Usage:
    return Usage(
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        cached_input_tokens=run.cached_input_tokens,
    )
