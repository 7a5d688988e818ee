"""The publish script against real Redis: what it stores and publishes, and how it is read."""

from __future__ import annotations

import asyncio
import json
import uuid

from redis.asyncio import Redis

from switchboard.runs.events import (
    EventPublisher,
    EventType,
    channel,
    decode_message,
    replay,
    stream_key,
)


async def test_each_event_is_stored_and_published_as_one_json_line(redis: Redis) -> None:
    publisher = EventPublisher(redis, max_events=100, ttl_seconds=60)
    run_id = str(uuid.uuid4())
    tricky = 'a\nb\r\tc "quoted" \\ é \u2028 \U0001f600'
    events: list[tuple[EventType, dict[str, object]]] = [
        (EventType.started, {"agent": "triage"}),
        (EventType.message_delta, {"delta": tricky, "agent": "triage"}),
        (EventType.tool_called, {"tool": "current_time", "arguments": {}, "agent": "triage"}),
        (EventType.cancelled, {}),
    ]
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(channel(run_id))
        assert await publisher.publish_many(run_id, events) == 4
        async with asyncio.timeout(5):
            message = None
            while message is None:
                message = await pubsub.get_message(timeout=1)

    lines = bytes(message["data"]).split(b"\n")
    entries = await redis.xrange(stream_key(run_id))
    assert len(lines) == len(entries) == 4
    for seq, ((type_, data), line, (entry_id, fields)) in enumerate(
        zip(events, lines, entries, strict=True), start=1
    ):
        kind, number, body = line.split(b"\t")
        assert (kind, number, entry_id) == (
            type_.value.encode(),
            str(seq).encode(),
            f"{seq}-1".encode(),
        )
        assert fields == {b"type": kind, b"data": body}  # the buffer holds the published JSON
        assert b"\r" not in body
        assert json.loads(body) == {**data, "run_id": run_id, "seq": seq}
    assert lines[3].split(b"\t")[2] == f'{{"run_id":"{run_id}","seq":4}}'.encode()

    live = decode_message(message["data"], run_id)
    replayed = await replay(redis, run_id, after=0)
    assert live == replayed
    assert [(e.run_id, e.seq, e.type, e.data) for e in live] == [
        (run_id, seq, type_, data) for seq, (type_, data) in enumerate(events, start=1)
    ]
    assert [e.data_json() for e in live] == [fields[b"data"] for _, fields in entries]


async def test_the_events_of_one_call_take_consecutive_numbers_above_the_floor(
    redis: Redis,
) -> None:
    publisher = EventPublisher(redis, max_events=100, ttl_seconds=60)
    run_id = str(uuid.uuid4())
    deltas = [(EventType.message_delta, {"delta": str(i), "agent": "a"}) for i in range(3)]

    assert await publisher.publish_many(run_id, deltas) == 3
    await redis.delete(f"run:{run_id}:seq")  # as after a restart without persistence
    assert await publisher.publish_many(run_id, deltas, after=3) == 6
    assert await publisher.publish_many(run_id, deltas, after=2) == 9  # the counter is ahead

    assert [e.seq for e in await replay(redis, run_id, after=0)] == list(range(1, 10))


async def test_an_entry_with_the_placeholder_for_no_fields_is_read_without_it(
    redis: Redis,
) -> None:
    run_id = str(uuid.uuid4())
    stored = json.dumps({"_": 0, "seq": 1, "run_id": run_id})
    await redis.xadd(stream_key(run_id), {"type": "run.cancelled", "data": stored}, id="1-1")

    [event] = await replay(redis, run_id, after=0)

    assert (event.seq, event.type, event.data) == (1, EventType.cancelled, {})
    assert json.loads(event.data_json()) == {"run_id": run_id, "seq": 1}
