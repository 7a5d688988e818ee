"""The event stream of a run: numbered events on Redis, live and replayable.

Each event gets the next sequence number of its run and is written, in one Lua call, to a
capped, expiring Redis stream (the replay buffer) and to the run's pub/sub channel (live
delivery). Stream entry ids are ``<seq>-1``, so a replay after event N is ``XRANGE (N+1)-0 +``.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from switchboard.kit.tracing import untraced
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


_TYPES = {kind.value.encode(): kind for kind in EventType}
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class RunEvent:
    """One numbered event of a run. ``raw`` is its ``data`` JSON as stored and published
    (``run_id`` and ``seq`` included), relayed as it is; ``data`` (the fields other than those
    two) is parsed from it when first read."""

    __slots__ = ("_data", "raw", "run_id", "seq", "type")

    def __init__(
        self,
        run_id: str,
        seq: int,
        type: EventType,
        data: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        self.run_id = run_id
        self.seq = seq
        self.type = type
        self.raw = raw
        self._data = data if data is not None or raw is not None else {}

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            data = json.loads(self.raw)  # type: ignore[arg-type]
            del data["run_id"], data["seq"]
            self._data = data
        return self._data

    def payload(self) -> dict[str, Any]:
        return {**self.data, "run_id": self.run_id, "seq": self.seq}

    def data_json(self) -> bytes:
        """The JSON object of the event's ``data`` line: its fields, ``run_id`` and ``seq``."""
        if self.raw is None:
            self.raw = _encode_json(self.payload()).encode()
        return self.raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunEvent):
            return NotImplemented
        return (self.run_id, self.seq, self.type, self.data) == (
            other.run_id,
            other.seq,
            other.type,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunEvent({self.run_id!r}, {self.seq}, {self.type.value!r}, {self.data!r})"

    @classmethod
    def decode(cls, type_: str | bytes, payload: str | bytes) -> RunEvent:
        """Checks ``payload`` (a JSON object with ``run_id`` and ``seq``) and keeps it as the
        event's JSON."""
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise TypeError("an event's data is a JSON object")
        run_id, seq = data.pop("run_id"), data.pop("seq")
        kind = _TYPES[type_ if isinstance(type_, bytes) else type_.encode()]
        # {"_": 0} stood for no fields in entries of the script before this one: re-encoded.
        raw = None if data.pop("_", None) is not None else _bytes(payload)
        return cls(str(run_id), int(seq), kind, data, raw=raw)


def event_body(run_id: str, data: Mapping[str, Any]) -> str:
    """An event's JSON as ``_PUBLISH`` takes it: its fields and ``run_id``, without the closing
    brace; the script appends ``seq``. JSON escapes line breaks, so the body is one line."""
    body = {**data, "run_id": run_id}
    body.pop("seq", None)
    return _encode_json(body)[:-1]


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def stream_key(run_id: str) -> str:
    return f"run:{run_id}:events"


def channel(run_id: str) -> str:
    return f"run:{run_id}"


def run_of_channel(name: bytes | str) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.removeprefix("run:")


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


# KEYS: seq, stream, channel. ARGV: run id (unused: the bodies name it), max events, ttl
# seconds, floor, then a type and a body (``event_body``: the event's JSON without its closing
# brace) per event. The script numbers the events, completes each body with ``,"seq":<n>}``,
# stores it as the entry's ``data`` and publishes a ``<type>\t<seq>\t<json>`` line per event:
# neither Redis nor the API parses an event's JSON on the way. Several events in one call cost
# one round trip and one connection checkout, and go out as one pub/sub message, so a
# subscriber relays them together: a worker streaming many runs at once sends each run's
# waiting deltas together. Each event still gets a buffer entry of its own, which replay reads.
# The floor is the last number its writer saw: after Redis lost its data (a restart without
# persistence) the counter would start again at 1 and reuse numbers clients already hold.
_PUBLISH = """
local count = (#ARGV - 4) / 2
local floor = tonumber(ARGV[4])
local last = redis.call('INCRBY', KEYS[1], count)
if last - count < floor then
  last = floor + count
  redis.call('SET', KEYS[1], last)
end
local seq = last - count
local lines = {}
for i = 5, #ARGV, 2 do
  seq = seq + 1
  local number = tostring(seq)
  local data = ARGV[i + 1] .. ',"seq":' .. number .. '}'
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], number .. '-1', 'type', ARGV[i], 'data', data)
  lines[#lines + 1] = ARGV[i] .. '\\t' .. number .. '\\t' .. data
end
redis.call('PUBLISH', KEYS[3], table.concat(lines, '\\n'))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return last
"""


class EventPublisher:
    """Sends runs' events through ``_PUBLISH``. The calls of every run in the process that
    arrive while a send is on the wire go out together in the next one, as one pipeline: with
    many runs streaming at once, a call per event per run would cost a socket write and a read
    each, on both ends. A call alone goes out at once."""

    def __init__(self, redis: Redis, *, max_events: int, ttl_seconds: int) -> None:
        self._redis = redis
        self._script = redis.register_script(_PUBLISH)
        self._max_events = max_events
        self._ttl = ttl_seconds
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

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
        """Numbers and sends events in order, in one script call; returns the last number.
        A caller sends its next call after this one returns, so its events stay in order."""
        args: list[Any] = [run_id, self._max_events, self._ttl, after]
        for type_, data in events:
            args += [type_.value, event_body(run_id, data)]
        loop = asyncio.get_running_loop()
        call = _Call((_seq_key(run_id), stream_key(run_id), channel(run_id)), args, loop)
        self._waiting.append(call)
        sender = self._sender
        if sender is None or sender.done() or sender.get_loop() is not loop:
            # Shared by every run: it belongs to none of their traces or log contexts.
            self._sender = loop.create_task(self._send_waiting(), context=contextvars.Context())
        return int(await call.result)

    async def _send_waiting(self) -> None:
        with untraced():  # a span per send would be a span per streamed token
            await self._send_all_waiting()

    async def _send_all_waiting(self) -> None:
        while self._waiting:
            calls, self._waiting = self._waiting, []
            try:
                results = await self._send(calls)
            except BaseException as exc:
                for call in calls:
                    call.fail(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for call, result in zip(calls, results, strict=True):
                if isinstance(result, Exception):
                    call.fail(result)
                else:
                    call.succeed(result)

    async def _send(self, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            call = calls[0]
            try:
                return [await self._script(keys=call.keys, args=call.args)]
            except ResponseError as exc:
                return [exc]
        results = await self._pipeline(calls)
        if any(isinstance(result, NoScriptError) for result in results):
            # Redis lost its scripts (a restart): NOSCRIPT means the call did not run.
            await self._redis.script_load(_PUBLISH)
            results = await self._pipeline(calls)
        return results

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))


@dataclass
class _Call:
    keys: tuple[str, str, str]
    args: list[Any]
    loop: asyncio.AbstractEventLoop
    result: asyncio.Future[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.result = self.loop.create_future()

    def succeed(self, value: Any) -> None:
        if not self.result.done():  # its caller may have been cancelled meanwhile
            self.result.set_result(value)

    def fail(self, error: BaseException) -> None:
        if self.result.done():
            return
        if isinstance(error, asyncio.CancelledError):
            self.result.cancel()
        else:
            self.result.set_exception(error)


def decode_message(raw: str | bytes, run_id: str) -> list[RunEvent]:
    """A pub/sub message of ``run_id`` as published above: a ``<type>\\t<seq>\\t<json>`` line per
    event. The JSON is relayed as it is, not parsed. Raises ``ValueError``, ``KeyError`` or
    ``TypeError`` for a message that does not decode."""
    events = []
    for line in _bytes(raw).split(b"\n"):
        type_, seq, data = line.split(b"\t", 2)
        events.append(RunEvent(run_id, int(seq), _TYPES[type_], raw=data))
    return events


async def replay(redis: Redis, run_id: str, *, after: int) -> list[RunEvent]:
    """Buffered events with a sequence number above ``after``, in order."""
    entries = await redis.xrange(stream_key(run_id), min=f"{after + 1}-0", max="+")
    return [entry_event(fields) for _, fields in entries or ()]


def entry_event(fields: Any) -> RunEvent:
    """The event stored in one stream entry (its ``type`` and ``data`` fields), checked."""
    return RunEvent.decode(fields[b"type"], fields[b"data"])
