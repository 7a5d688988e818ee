from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from api.sse import event_stream
from switchboard.runs.events import EventType, RunEvent
from switchboard.runs.settings import RunsSettings


async def _slow_run() -> AsyncIterator[list[RunEvent]]:
    await asyncio.sleep(1.3)
    yield [RunEvent("r", 1, EventType.cancelled)]


async def test_idle_streams_get_ping_comments_and_end_after_the_terminal_event() -> None:
    app = FastAPI()

    @app.get("/s")
    async def stream():  # type: ignore[no-untyped-def]
        return event_stream(_slow_run(), RunsSettings(ping_seconds=1))

    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as client:
        response = await client.get("/s")

    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    lines = [line for line in response.text.splitlines() if line]
    assert lines[0] == ": ping"
    assert lines[-3:] == ["id: 1", "event: run.cancelled", 'data: {"run_id":"r","seq":1}']
