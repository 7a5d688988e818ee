"""A small Server-Sent Events reader over an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    id: int | None  # only stream.error frames have none
    event: str
    data: dict[str, Any]


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """Events in order; comments (pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                seq = int(fields["id"]) if "id" in fields else None
                yield Frame(seq, fields["event"], json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def collect(response: httpx.Response, *, stop_after: int | None = None) -> list[Frame]:
    received: list[Frame] = []
    async for frame in frames(response):
        received.append(frame)
        if stop_after is not None and len(received) >= stop_after:
            break
    return received


async def read_until(events: AsyncIterator[Frame], received: list[Frame], deltas: int) -> None:
    """Appends frames of ``events`` to ``received`` until it holds ``deltas`` message deltas."""
    async for frame in events:
        received.append(frame)
        if sum(f.event == "message.delta" for f in received) >= deltas:
            return
    raise AssertionError(f"the stream ended early: {[f.event for f in received]}")
