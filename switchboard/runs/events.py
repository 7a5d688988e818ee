"""The event stream of a run: numbered events on Redis, live and replayable.

Each event gets the next sequence number of its run and is written, in one Lua call, to a
capped, expiring Redis stream (the replay buffer) and to the run's pub/sub channel (live
delivery). Stream entry ids are ``<seq>-1``, so a replay after event N is ``XRANGE (N+1)-0 +``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from switchboard.runs.settings import RunsSettings


class EventType(enum.StrEnum):
    queued = "run.queued"
    started = "run.started"
    agent_updated = "agent.updated"
    message_delta = "message.delta"
    tool_called = "tool.called"
    tool_output = "tool.output"
    message_completed = "message.completed"
    requires_action = "run.requires_action"
    completed = "run.completed"
    failed = "run.failed"
    cancelled = "run.cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (EventType.completed, EventType.failed, EventType.cancelled)


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    seq: int
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {**self.data, "run_id": self.run_id, "seq": self.seq}

    @classmethod
    def decode(cls, type_: str | bytes, payload: str | bytes) -> RunEvent:
        data = json.loads(payload)
        run_id, seq = data.pop("run_id"), data.pop("seq")
        kind = type_.decode() if isinstance(type_, bytes) else type_
        return cls(run_id=run_id, seq=int(seq), type=EventType(kind), data=data)


def stream_key(run_id: str) -> str:
    return f"run:{run_id}:events"


def channel(run_id: str) -> str:
    return f"run:{run_id}"


def cancel_key(run_id: str) -> str:
    """The run's cancel flag; a notice is published on the channel of the same name."""
    return f"run:{run_id}:cancel"


CANCEL_PATTERN = cancel_key("*")


def run_of_cancel_channel(name: bytes | str) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.removeprefix("run:").removesuffix(":cancel")


def _seq_key(run_id: str) -> str:
    return f"run:{run_id}:seq"


def lease_key(run_id: str) -> str:
    """Held by the worker running the run, renewed while it runs: its absence means lost."""
    return f"run:{run_id}:lease"


def suspect_key(run_id: str) -> str:
    return f"run:{run_id}:suspect"


# KEYS: seq, stream, channel. ARGV: run id, max events, ttl seconds, floor, then a type and a
# data JSON per event. Several events in one call cost one round trip and one connection
# checkout, and go out as one pub/sub message (a line per event), so a subscriber parses and
# relays them together: a worker streaming many runs at once sends each run's waiting deltas
# together. Each event still gets a buffer entry of its own, which replay reads.
# The floor is the last number its writer saw: after Redis lost its data (a restart without
# persistence) the counter would start again at 1 and reuse numbers clients already hold.
_PUBLISH = """
local floor = tonumber(ARGV[4])
local seq = 0
local lines = {}
for i = 5, #ARGV, 2 do
  seq = redis.call('INCR', KEYS[1])
  if seq <= floor then
    seq = floor + 1
    redis.call('SET', KEYS[1], seq)
  end
  floor = seq
  local payload = cjson.decode(ARGV[i + 1])
  payload['run_id'] = ARGV[1]
  payload['seq'] = seq
  local encoded = cjson.encode(payload)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-1', 'type', ARGV[i], 'data', encoded)
  lines[#lines + 1] = ARGV[i] .. '\\t' .. encoded
end
redis.call('PUBLISH', KEYS[3], table.concat(lines, '\\n'))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


class EventPublisher:
    def __init__(self, redis: Redis, *, max_events: int, ttl_seconds: int) -> None:
        self._script = redis.register_script(_PUBLISH)
        self._max_events = max_events
        self._ttl = ttl_seconds

    @classmethod
    def for_settings(cls, redis: Redis, settings: RunsSettings) -> EventPublisher:
        """The publisher every process uses: buffers capped and expiring as ``RUNS_*`` say."""
        return cls(
            redis,
            max_events=settings.buffer_max_events,
            ttl_seconds=settings.buffer_ttl_seconds,
        )

    async def publish(self, run_id: str, type_: EventType, *, after: int = 0, **data: Any) -> int:
        """Numbers and sends one event; ``after`` is the last number the caller published."""
        return await self.publish_many(run_id, [(type_, data)], after=after)

    async def publish_many(
        self,
        run_id: str,
        events: Sequence[tuple[EventType, Mapping[str, Any]]],
        *,
        after: int = 0,
    ) -> int:
        """Numbers and sends events in order, in one call; returns the last number."""
        args: list[Any] = [run_id, self._max_events, self._ttl, after]
        for type_, data in events:
            # An empty dict must stay an object: cjson turns {} into [] unless it has a key.
            args += [type_.value, json.dumps(data) if data else '{"_": 0}']
        seq = await self._script(
            keys=[_seq_key(run_id), stream_key(run_id), channel(run_id)], args=args
        )
        return int(seq)


def decode_message(raw: str | bytes) -> list[RunEvent]:
    """A pub/sub message as published above: a ``<type>\\t<payload>`` line per event."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [_clean(RunEvent.decode(*line.split("\t", 1))) for line in text.split("\n")]


def _clean(event: RunEvent) -> RunEvent:
    event.data.pop("_", None)
    return event


async def replay(redis: Redis, run_id: str, *, after: int) -> list[RunEvent]:
    """Buffered events with a sequence number above ``after``, in order."""
    entries = await redis.xrange(stream_key(run_id), min=f"{after + 1}-0", max="+")
    return [entry_event(fields) for _, fields in entries or ()]


def entry_event(fields: Any) -> RunEvent:
    """The event stored in one stream entry (its ``type`` and ``data`` fields)."""
    return _clean(RunEvent.decode(fields[b"type"], fields[b"data"]))
