"""A run's outbox: deltas leave in batches, in order, and nothing overtakes them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis.asyncio import Redis

from switchboard.runs.emitter import BATCH, RunEmitter
from switchboard.runs.events import EventPublisher, EventType, replay


class CountingPublisher(EventPublisher):
    def __init__(self, redis: Redis) -> None:
        super().__init__(redis, max_events=10_000, ttl_seconds=60)
        self.calls: list[int] = []

    async def publish_many(self, run_id: str, events: Any, *, after: int = 0) -> int:
        self.calls.append(len(events))
        return await super().publish_many(run_id, events, after=after)


async def test_deltas_go_out_in_batches_and_in_order(redis: Redis) -> None:
    publisher = CountingPublisher(redis)
    run_id = str(uuid.uuid4())
    events = RunEmitter(publisher, run_id)
    await events.emit(EventType.started, agent="triage")

    for index in range(250):
        events.emit_soon(EventType.message_delta, delta=f"w{index} ", agent="triage")
    await events.emit(EventType.completed, usage={})  # waits for every delta before it

    stored = await replay(redis, run_id, after=0)
    assert [e.seq for e in stored] == list(range(1, 253))
    assert stored[0].type == EventType.started
    assert [e.data["delta"] for e in stored[1:-1]] == [f"w{i} " for i in range(250)]
    assert stored[-1].type == EventType.completed
    assert events.pending == 0
    assert events.last == 252
    # Queued without waiting, the deltas left several per call, never more than a batch.
    assert len(publisher.calls) < 250
    assert max(publisher.calls) <= BATCH
    assert sum(publisher.calls) == 252


async def test_an_event_sent_with_the_next_shares_its_publish(redis: Redis) -> None:
    publisher = CountingPublisher(redis)
    run_id = str(uuid.uuid4())
    events = RunEmitter(publisher, run_id, last=1)
    events.emit_with_next(EventType.started, within=5.0, agent="triage")
    await asyncio.sleep(0.05)
    assert publisher.calls == []  # waiting for company

    events.emit_soon(EventType.message_delta, delta="Hi", agent="triage")
    await events.flush(within=1)

    assert publisher.calls == [2]
    stored = await replay(redis, run_id, after=0)
    assert [(e.seq, e.type) for e in stored] == [
        (2, EventType.started),
        (3, EventType.message_delta),
    ]


async def test_an_event_sent_with_the_next_leaves_alone_when_none_comes(redis: Redis) -> None:
    publisher = CountingPublisher(redis)
    run_id = str(uuid.uuid4())
    events = RunEmitter(publisher, run_id)
    events.emit_with_next(EventType.started, within=0.05, agent="triage")

    async with asyncio.timeout(5):
        while not publisher.calls:
            await asyncio.sleep(0.01)
    await events.flush(within=1)  # waits out the send in flight
    assert publisher.calls == [1]
    assert [e.type for e in await replay(redis, run_id, after=0)] == [EventType.started]
