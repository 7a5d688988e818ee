"""Following a run's events against real Redis: replay, live, duplicates, reconnects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from switchboard.runs.errors import EventsLostError
from switchboard.runs.events import EventPublisher, EventType, RunEvent, channel, decode_message
from switchboard.runs.hub import QUEUE_SIZE, EventHub
from switchboard.runs.stream import follow_batches


@pytest.fixture
async def hub(redis: Redis) -> AsyncIterator[EventHub]:
    hub = EventHub(redis, reconnect_seconds=0.05)
    yield hub
    await hub.stop()


@pytest.fixture
def publisher(redis: Redis) -> EventPublisher:
    return EventPublisher(redis, max_events=5000, ttl_seconds=300)


async def _never_finished(seq: int) -> RunEvent | None:
    return None


async def _events(batches: AsyncIterator[list[RunEvent]]) -> AsyncIterator[RunEvent]:
    """One event at a time, as a client reads them."""
    async for batch in batches:
        for event in batch:
            yield event


async def _collect(run_id: str, after: int, hub: EventHub, redis: Redis) -> list[RunEvent]:
    return [
        event
        async for event in _events(
            follow_batches(
                run_id, after=after, hub=hub, redis=redis, terminal_from_database=_never_finished
            )
        )
    ]


async def _until_ready(hub: EventHub) -> None:
    """Connected, so that streams opened now subscribe through the change batches."""
    hub._ensure_started()
    async with asyncio.timeout(5):
        await hub._ready.wait()


async def _until_subscribed(hub: EventHub) -> None:
    for _ in range(200):
        if hub.open_streams and hub._ready.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never subscribed")


async def test_replays_then_follows_live_each_event_once(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    for index in range(3):
        await publisher.publish(run_id, EventType.message_delta, delta=f"w{index} ", agent="a")

    following = asyncio.create_task(_collect(run_id, 1, hub, redis))
    await _until_subscribed(hub)
    for index in range(3, 6):
        await publisher.publish(run_id, EventType.message_delta, delta=f"w{index} ", agent="a")
    await publisher.publish(run_id, EventType.completed, usage={"input_tokens": 1})
    events = await asyncio.wait_for(following, 10)

    assert [event.seq for event in events] == [2, 3, 4, 5, 6, 7]
    assert events[-1].type is EventType.completed
    assert events[-1].data == {"usage": {"input_tokens": 1}}
    assert hub.open_streams == 0


async def test_a_dropped_redis_connection_loses_nothing(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    await publisher.publish(run_id, EventType.started, agent="triage")
    following = asyncio.create_task(_collect(run_id, 0, hub, redis))
    await _until_subscribed(hub)

    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for index in range(5):
        await publisher.publish(run_id, EventType.message_delta, delta=str(index), agent="a")
    await publisher.publish(run_id, EventType.cancelled)
    events = await asyncio.wait_for(following, 10)

    assert [event.seq for event in events] == list(range(1, 8))


async def test_a_slow_reader_catches_up_from_the_buffer(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    stream = _events(
        follow_batches(
            run_id, after=0, hub=hub, redis=redis, terminal_from_database=_never_finished
        )
    )
    first = asyncio.create_task(anext(stream))
    await _until_subscribed(hub)
    total = QUEUE_SIZE + 200
    for index in range(total):
        await publisher.publish(run_id, EventType.message_delta, delta=str(index), agent="a")
    await publisher.publish(run_id, EventType.completed, usage={})

    events = [await asyncio.wait_for(first, 10)]
    events += [event async for event in stream]

    assert [event.seq for event in events] == list(range(1, total + 2))


async def test_a_client_past_the_end_gets_nothing_more(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    await publisher.publish(run_id, EventType.started, agent="triage")
    await publisher.publish(run_id, EventType.failed, error={"code": "x", "message": "y"})

    assert await asyncio.wait_for(_collect(run_id, 2, hub, redis), 5) == []


async def test_a_gap_in_the_buffer_ends_the_stream_with_events_lost(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    for index in range(4):
        await publisher.publish(run_id, EventType.message_delta, delta=str(index), agent="a")
    await redis.xdel(f"run:{run_id}:events", "2-1")  # as if trimmed or lost

    received: list[RunEvent] = []
    with pytest.raises(EventsLostError) as lost:
        async for event in _events(
            follow_batches(
                run_id, after=0, hub=hub, redis=redis, terminal_from_database=_never_finished
            )
        ):
            received.append(event)

    assert [event.seq for event in received] == [1]
    assert (lost.value.run_id, lost.value.after) == (run_id, 1)


async def test_a_silent_stream_reads_the_buffer_again(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    """Pub/sub is at most once: a missed terminal event is found in the buffer anyway."""
    run_id = str(uuid.uuid4())
    await publisher.publish(run_id, EventType.started, agent="triage")
    stream = _events(
        follow_batches(
            run_id,
            after=1,
            hub=hub,
            redis=redis,
            terminal_from_database=_never_finished,
            resync_seconds=0.1,
        )
    )
    pending = asyncio.create_task(anext(stream))
    await _until_subscribed(hub)
    # Written to the buffer only, never published: no live message will come.
    await redis.xadd(
        f"run:{run_id}:events",
        {"type": "run.completed", "data": f'{{"run_id":"{run_id}","seq":2,"usage":{{}}}}'},
        id="2-1",
    )

    event = await asyncio.wait_for(pending, 5)

    assert (event.seq, event.type) == (2, EventType.completed)


async def test_events_published_together_arrive_together_and_in_order(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    """One publish call of several events is one pub/sub message; the stream relays it as one
    batch, so the API writes it to the client at once."""
    run_id = str(uuid.uuid4())
    await publisher.publish(run_id, EventType.started, agent="triage")
    batches = follow_batches(
        run_id, after=0, hub=hub, redis=redis, terminal_from_database=_never_finished
    )
    first = await asyncio.wait_for(anext(batches), 5)
    await _until_subscribed(hub)

    deltas = [
        (EventType.message_delta, {"delta": f"w{index} ", "agent": "a"}) for index in range(5)
    ]
    await publisher.publish_many(run_id, [*deltas, (EventType.completed, {"usage": {}})], after=1)
    rest = [batch async for batch in batches]

    assert [[event.seq for event in batch] for batch in [first, *rest]] == [[1], [2, 3, 4, 5, 6, 7]]
    assert [event.data.get("delta") for event in rest[0][:5]] == [f"w{i} " for i in range(5)]
    assert rest[0][-1].type is EventType.completed


async def test_one_publish_call_is_one_pub_sub_message(
    redis: Redis, publisher: EventPublisher
) -> None:
    run_id = str(uuid.uuid4())
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(channel(run_id))
        events = [(EventType.message_delta, {"delta": f"w{i}\n", "agent": "a"}) for i in range(3)]
        await publisher.publish_many(run_id, events)
        await publisher.publish(run_id, EventType.cancelled, after=3)
        messages = []
        async with asyncio.timeout(5):
            while len(messages) < 2:
                # None for the subscribe confirmation, which is skipped.
                message = await pubsub.get_message(timeout=1)
                if message is not None:
                    messages.append(message["data"])

    decoded = [decode_message(data, run_id) for data in messages]
    assert [[(e.seq, e.type) for e in batch] for batch in decoded] == [
        [(1, EventType.message_delta), (2, EventType.message_delta), (3, EventType.message_delta)],
        [(4, EventType.cancelled)],
    ]
    assert [e.data["delta"] for e in decoded[0]] == ["w0\n", "w1\n", "w2\n"]
    assert decoded[1][0].data == {}


async def test_many_streams_opened_and_closed_at_once_each_get_their_own_events(
    redis: Redis, hub: EventHub, publisher: EventPublisher
) -> None:
    """Subscriptions go out in batches; every stream still hears its own run, live."""
    await _until_ready(hub)
    runs = [str(uuid.uuid4()) for _ in range(80)]  # the fixture client pools 100 connections
    streams = [asyncio.create_task(_collect(run_id, 0, hub, redis)) for run_id in runs]
    async with asyncio.timeout(10):
        while hub.open_streams < len(runs) or hub._to_subscribe:
            await asyncio.sleep(0.01)

    for run_id in runs:
        await publisher.publish(run_id, EventType.started, agent="triage")
    for run_id in runs:
        await publisher.publish(run_id, EventType.completed, usage={}, after=1)
    results = await asyncio.wait_for(asyncio.gather(*streams), 10)

    for run_id, events in zip(runs, results, strict=True):
        assert [(e.run_id, e.seq, e.type) for e in events] == [
            (run_id, 1, EventType.started),
            (run_id, 2, EventType.completed),
        ]
    assert hub.open_streams == 0
    async with asyncio.timeout(5):
        while hub._to_unsubscribe or len(hub._pubsub.channels) > 1:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)


async def test_a_failed_subscribe_on_a_live_connection_still_delivers_live_events(
    redis: Redis, hub: EventHub, publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SUBSCRIBE that raises (a write timeout, say) while the connection otherwise stays up:
    the hub reconnects and subscribes again, so the stream is live in a moment rather than
    waiting for its quiet-stream re-read of the buffer (15 s)."""
    await _until_ready(hub)
    assert hub._pubsub is not None
    real_subscribe = hub._pubsub.subscribe
    failures = 0

    async def fail_once(*channels: str) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise TimeoutError("Timeout writing to socket")
        await real_subscribe(*channels)

    monkeypatch.setattr(hub._pubsub, "subscribe", fail_once)
    run_id = str(uuid.uuid4())
    following = asyncio.create_task(_collect(run_id, 0, hub, redis))
    await _until_subscribed(hub)
    await asyncio.sleep(0.3)  # settled: a reconnect would be done by now

    await publisher.publish(run_id, EventType.started, agent="triage")
    await publisher.publish(run_id, EventType.cancelled)
    events = await asyncio.wait_for(following, 3)

    assert failures == 1
    assert [event.seq for event in events] == [1, 2]


async def test_a_quiet_hub_checks_its_connection_and_keeps_delivering(
    redis: Redis, hub: EventHub, publisher: EventPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader waits for messages without a timeout; a hub with nothing to change pings
    its connection instead, and the pongs do not disturb the streams."""
    monkeypatch.setattr("switchboard.runs.hub.HEALTH_CHECK_SECONDS", 0.05)
    await _until_ready(hub)
    run_id = str(uuid.uuid4())
    following = asyncio.create_task(_collect(run_id, 0, hub, redis))
    await _until_subscribed(hub)

    connection = hub._pubsub.connection  # type: ignore[union-attr]
    host, port = connection._writer.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
    async with asyncio.timeout(5):
        while True:
            clients = await redis.client_list(_type="pubsub")
            [ours] = [c for c in clients if c["addr"] == f"{host}:{port}"]
            if ours["cmd"] == "ping":
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a few more pings
    await publisher.publish(run_id, EventType.started, agent="triage")
    await publisher.publish(run_id, EventType.cancelled, after=1)

    assert [event.seq for event in await asyncio.wait_for(following, 5)] == [1, 2]
