from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sse_starlette import ServerSentEvent
from sse_starlette.sse import SendTimeoutError

from api.sse import _encode, event_stream
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


def test_a_run_event_is_written_as_sse_starlette_writes_it() -> None:
    relayed = RunEvent(
        "r", 7, EventType.message_delta, raw=b'{"delta":"a\\nb","run_id":"r","seq":7}'
    )
    rebuilt = RunEvent("r", 8, EventType.completed, {"usage": {"input_tokens": 1}})

    for event in (relayed, rebuilt):
        expected = ServerSentEvent(
            id=str(event.seq),
            event=event.type.value,
            data=json.dumps(event.payload(), separators=(",", ":")),
        ).encode()
        assert _encode(event) == expected
    assert _encode(relayed).endswith(b'data: {"delta":"a\\nb","run_id":"r","seq":7}\r\n\r\n')


async def _endless_run() -> AsyncIterator[list[RunEvent]]:
    for seq in range(1, 1_000_000):
        yield [RunEvent("r", seq, EventType.message_delta, {"delta": "w "})]
        await asyncio.sleep(0)


async def _silent_run() -> AsyncIterator[list[RunEvent]]:
    await asyncio.Event().wait()
    yield []


@pytest.mark.parametrize(
    ("run", "stuck_on"),
    [(_endless_run, "events"), (_silent_run, "a ping")],
    ids=["events", "ping"],
)
async def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(
    run: Callable[[], AsyncIterator[list[RunEvent]]], stuck_on: str
) -> None:
    """The client stops reading (a send never returns) while the stream sends events, or
    pings an idle run: the stream gives up after the send timeout and lets go of its slot."""
    sent: list[dict[str, Any]] = []
    stuck = asyncio.Event()
    released: list[bool] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) >= 3 or b"ping" in message.get("body", b""):
            stuck.set()
            await asyncio.Event().wait()  # the client's window stays full

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never says it left
        raise AssertionError

    async def closed() -> None:
        released.append(True)

    response = event_stream(
        run(), RunsSettings(send_timeout_seconds=0.3, ping_seconds=1), closed=closed
    )
    scope = {"type": "http", "method": "GET", "headers": []}
    started = asyncio.get_running_loop().time()
    with pytest.raises(SendTimeoutError):
        await asyncio.wait_for(response(scope, receive, send), 5)  # type: ignore[arg-type]
    waited = asyncio.get_running_loop().time() - started

    assert stuck.is_set()
    assert 0.3 <= waited < 3
    assert released == [True]
    if stuck_on == "a ping":
        assert b"ping" in sent[-1]["body"]
