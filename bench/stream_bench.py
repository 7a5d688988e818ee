"""Agent-run streams through the whole system, against the agent runtime alone, in one run.

Starts ``python -m api`` (one uvicorn process) and one Celery worker process on the ``runs``
queue (thread pool) on a PostgreSQL database and a Redis index (``BENCH_REDIS_DB``, 13) of their
own, with the built-in offline model, signs up one user, then measures:

- time to first token: ``POST /api/v1/chat/stream`` to its first ``message.delta`` frame, one
  request at a time. Baseline: the same agent runtime built in this process,
  ``Runner.run_streamed`` to its first text delta; the difference is what the API, Postgres,
  Celery, Redis pub/sub and SSE add. Alternates between the two in rounds so noise hits both.
- fan-out: events per second delivered to ``--clients`` concurrent SSE clients (long messages,
  no token delay). Baseline: the text deltas per second the runtime alone produces in this
  process at the same concurrency.
- slow streams: ``--streams`` streams opened at once (or over ``--ramp-seconds``) on a fresh
  API and worker (``--worker-threads`` runs at once, 250 by default, the rest wait in the
  queue as in production) with ``OFFLINE_MODEL_TOKEN_DELAY_MS=--slow-delay-ms``.
  Samples every 0.5 s the Redis connections of each process (``CLIENT LIST`` entries matched to
  the process's sockets in /proc), their Postgres connections (``pg_stat_activity``), their RSS
  and the runs ``running``; afterwards the exact peak of running runs from their start and
  finish times. Baseline: the duration the model alone needs (words x delay).
- provider: the time to first token and the fan-out again, with a real provider's path in
  place of the offline model: the local OpenAI-compatible server (tests/support/openai_server.py)
  streaming its default reply (the message's words) with no token delay and a fixed first-token
  delay, each of ``--provider-delays-ms`` (0 and 200) in turn. For each delay and each wire
  format of ``--provider-apis`` a fresh API and worker run with ``OPENAI_API_KEY=sk-bench``,
  ``OPENAI_BASE_URL=<server>/v1`` and ``OPENAI_API``; the baseline is the agent runtime built
  in this process from the same settings (``create_agent_runtime``), talking to the same server.
  The fan-out runs at the first delay only (``--provider-fanout-words``). Last, the time each
  model's whole system adds to the first token, side by side, and the provider's minus the
  offline model's, against the target: within 1 ms.

  The server runs as a process of its own (``--provider-server process``, the default) rather
  than as threads of this one: threads would share this process's GIL with the baseline's
  client, so the in-process runtime would pay for the server's Python and the server would wait
  (up to the 5 ms switch interval) for the bench's loop, while the worker, a process of its own,
  would not; as a process the server costs both sides the same loopback hop. Measured on a
  loaded 2-core machine (2026-12-03, other tests running), the two did not differ beyond the
  noise: the runtime alone's first token 29.0 and 15.9 ms with threads, 14.2 and 20.4 ms as a
  process (p50, 60 each); its deltas at 100 clients 2,319/s with threads, 2,050/s as a process.
  ``--provider-server thread`` keeps the comparison at hand. The server's requests are counted
  and its log searched for errors.

Every stream is checked: 200, ids 1, 2, 3, ... with no gap or duplicate (``data.seq`` equal),
one run, deltas adding up to the reply, ``run.completed`` last, then the server closes it. A
stream with no terminal event after ``--deadline`` seconds counts as lost. Targets are printed,
not asserted; the exit status is 1 if any stream failed its check, and the warnings and errors
of the processes' logs are summarised.

    uv run --frozen python bench/stream_bench.py [--ttft-requests 200] [--clients 100]
        [--fanout-runs 1] [--fanout-words 200] [--streams 1000] [--slow-words 30]
        [--ramp-seconds 0] [--provider-delays-ms 0,200] [--provider-apis chat_completions]
        [--provider-fanout-words 200] [--provider-server process]
        [--skip ttft,fanout,slow,provider]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import psycopg
import redis
from agents import Runner, TResponseInputItem
from pydantic import AnyUrl, SecretStr

from switchboard.agents.context import AgentContext, ConversationHit, UsageSummary
from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.services, as a script
from bench.services import (
    REDIS_URL,
    Service,
    cpu_seconds,
    create_database,
    descendants,
    free_port,
    p50_p99_ms,
    put_on_plan,
    run_module,
    start,
    start_api,
    start_worker,
    tear_down,
    wait_until_it_answers,
    workspace,
)
from tests.support.openai_server import OpenAIServer

PASSWORD = "a long enough passphrase"
CHAT_STREAM = "/api/v1/chat/stream"
TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled"})
# No word starts with a keyword of the offline model (billing, invoice, time, search, usage),
# so the triage agent answers by itself: one model turn, one delta per word.
LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
WORDS = LOREM.split()
TTFT_TARGET_MS = 15.0
FANOUT_TARGET = 10_000.0
SLOW_RUNNING_TARGET = 200
PROVIDER_MATCH_MS = 1.0


def message_of(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


# --- processes --------------------------------------------------------------------------------

T = TypeVar("T")


async def watched(work: Awaitable[T], services: Sequence[Service]) -> T:
    """``work``, unless one of the processes exits first: then its log, at once."""

    async def watch() -> None:
        while True:
            for service in services:
                if service.process.poll() is not None:
                    raise RuntimeError(f"{service.name} exited:\n{service.tail(30)}")
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({watcher, task}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            watcher.result()  # raises
        return task.result()
    finally:
        watcher.cancel()


def start_system(
    env: dict[str, str],
    logs: Path,
    database: str,
    name: str,
    threads: int,
    services: list[Service],
) -> System:
    api, base = start_api(env, logs, f"api-{name}")
    services.append(api)
    worker = start_worker(
        env, logs, f"worker-{name}", pool="threads", concurrency=threads, queues="runs"
    )
    services.append(worker)
    return System(api, worker, base, database)


# --- /proc ------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """VmRSS of the process and all its descendants."""
    total_kib = 0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def local_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local ports of the process's TCP sockets connected to ``remote_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            for line in lines:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def redis_clients_of(clients: Sequence[dict[str, Any]], pid: int) -> tuple[int, int]:
    """(connections, pub/sub connections) in ``CLIENT LIST`` that are the process's sockets."""
    ports = local_ports_to(pid, 6379)
    total = pubsub = 0
    for entry in clients:
        if int(str(entry["addr"]).rsplit(":", 1)[1]) in ports:
            total += 1
            if int(entry.get("sub", 0)) or int(entry.get("psub", 0)):
                pubsub += 1
    return total, pubsub


# --- SSE client -------------------------------------------------------------------------------

_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_EOL = re.compile(rb"\r\n|\n|\r")


def parse_frame(block: bytes) -> tuple[int | None, str, dict[str, Any]] | None:
    seq: int | None = None
    kind = ""
    data: list[bytes] = []
    for line in _EOL.split(block):
        if not line or line.startswith(b":"):
            continue  # a ": ping" comment
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"id":
            seq = int(value)
        elif name == b"event":
            kind = value.decode()
        elif name == b"data":
            data.append(value)
    if not data:
        return None
    return seq, kind, json.loads(b"\n".join(data))


async def sse_events(
    response: httpx.Response,
) -> AsyncIterator[tuple[int | None, str, dict[str, Any]]]:
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        blocks = _BLANK_LINE.split(buffer)
        buffer = blocks.pop()
        for block in blocks:
            frame = parse_frame(block)
            if frame is not None:
                yield frame


@dataclass
class Gauge:
    """Streams currently open (200 received, terminal event not yet), for the sampler."""

    open: int = 0
    peak: int = 0

    def up(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def down(self) -> None:
        self.open -= 1


@dataclass
class StreamResult:
    started: float
    headers: float | None = None
    run_started: float | None = None
    first_delta: float | None = None
    ended: float | None = None
    events: int = 0
    deltas: int = 0
    run_id: str | None = None
    problem: str | None = None


async def chat_stream(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    message: str,
    *,
    deadline: float,
    gauge: Gauge | None = None,
) -> StreamResult:
    """One ``POST /chat/stream``, read to its end and checked against the contract."""
    result = StreamResult(started=time.perf_counter())
    last = 0
    reply: list[str] = []
    opened = False
    try:
        async with asyncio.timeout(deadline) as timeout:
            async with client.stream(
                "POST", CHAT_STREAM, json={"message": message}, headers=headers
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode(errors="replace")
                    result.problem = f"HTTP {response.status_code}: {body}"
                    return result
                result.headers = time.perf_counter()
                if gauge is not None:
                    gauge.up()
                    opened = True
                async for seq, kind, data in sse_events(response):
                    problem = check_event(result, seq, kind, data, last, reply, message)
                    if problem is not None:
                        result.problem = problem
                        return result
                    last = seq or 0
                    if kind in TERMINAL:
                        result.ended = time.perf_counter()
                        if gauge is not None:
                            gauge.down()
                            opened = False
                        # The server closes the stream right after the terminal event.
                        timeout.reschedule(asyncio.get_running_loop().time() + 10)
                if result.ended is None:
                    result.problem = f"closed after event {last} without a terminal event"
    except TimeoutError:
        if result.ended is None:
            result.problem = f"no terminal event within {deadline:.0f} s (last event {last})"
        else:
            result.problem = f"not closed within 10 s of its terminal event {last}"
    except httpx.HTTPError as exc:
        result.problem = f"{type(exc).__name__} after event {last}: {exc!r}"
    finally:
        if opened and gauge is not None:
            gauge.down()
    return result


def check_event(
    result: StreamResult,
    seq: int | None,
    kind: str,
    data: dict[str, Any],
    last: int,
    reply: list[str],
    message: str,
) -> str | None:
    if result.ended is not None:
        return f"{kind} (id {seq}) after the terminal event"
    if seq is None:
        return f"{kind} without an id after id {last}: {data}"
    if seq != last + 1:
        return f"{kind} has id {seq} after id {last}"
    if data.get("seq") != seq:
        return f"{kind} id {seq} carries seq {data.get('seq')}"
    if result.run_id is None:
        result.run_id = data.get("run_id")
    elif data.get("run_id") != result.run_id:
        return f"{kind} id {seq} belongs to run {data.get('run_id')}"
    result.events += 1
    if kind == "run.started":
        result.run_started = time.perf_counter()
    elif kind == "message.delta":
        if result.first_delta is None:
            result.first_delta = time.perf_counter()
        result.deltas += 1
        reply.append(data["delta"])
    elif kind == "message.completed" and data.get("content") != "".join(reply):
        return "message.completed content differs from its deltas"
    elif kind in TERMINAL:
        if kind != "run.completed":
            return f"ended with {kind}: {data}"
        if "".join(reply) != message:
            return "the deltas do not add up to the model's reply"
    return None


def report_problems(label: str, results: Sequence[StreamResult], database: str) -> int:
    failed = [r for r in results if r.problem is not None]
    if failed:
        print(f"  FAILED: {len(failed)} of {len(results)} {label} streams broke the contract:")
        states = run_states(database, [r.run_id for r in failed if r.run_id])
        for r in failed[:5]:
            print(
                f"    run {r.run_id}: {r.problem}; in Postgres: {states.get(r.run_id or '', '-')}"
            )
        kinds: dict[str, int] = {}
        counts: dict[str, int] = {}
        for r in failed:
            kind = re.sub(r"\d+", "N", (r.problem or "")[:60])
            kinds[kind] = kinds.get(kind, 0) + 1
            state = states.get(r.run_id or "", "no run").split(",")[0]
            counts[state] = counts.get(state, 0) + 1
        for kind, count in sorted(kinds.items(), key=lambda item: -item[1])[:5]:
            print(f"    {count:5d} x {kind}")
        print(f"    their runs: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}")
    return len(failed)


def run_states(database: str, run_ids: Sequence[str]) -> dict[str, str]:
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        rows = conn.execute(
            "SELECT id::text, status, error_code, started_at IS NOT NULL, finished_at IS NOT NULL"
            " FROM run WHERE id = ANY(%s::uuid[])",
            (list(run_ids),),
        ).fetchall()
    return {
        run_id: f"{status}, error {error}, started {started}, finished {finished}"
        for run_id, status, error, started, finished in rows
    }


@dataclass
class System:
    """One API process and one worker process on the bench database, and a signed-in user."""

    api: Service
    worker: Service
    base: str
    database: str
    headers: dict[str, str] = field(default_factory=dict)


async def prepare(system: System) -> None:
    """A user on a plan without limits (the bench measures the stack, not the free plan's
    allowance), and one stream through the system: the worker is up and consuming."""
    system.headers = await sign_up(system.base)
    put_on_plan(system.database, system.headers, "bench-unlimited")
    async with http_client(system.base, 1) as client:
        first = await chat_stream(client, system.headers, message_of(3), deadline=60)
    if first.problem is not None:
        raise RuntimeError(f"the first stream failed: {first.problem}")


async def sign_up(base: str) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        registered = await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "tenant_name": "Bench"},
        )
        assert registered.status_code == 201, registered.text
        pair = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert pair.status_code == 200, pair.text
    return {"Authorization": f"Bearer {pair.json()['access_token']}"}


def http_client(base: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        timeout=httpx.Timeout(60.0, connect=30.0, pool=300.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


# --- the runtime alone ------------------------------------------------------------------------


class NoBackend:
    """The messages call no tool; a tool call would be a bench bug."""

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        raise AssertionError("search_conversations called")

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary:
        raise AssertionError("usage_summary called")


async def runtime_run(runtime: AgentRuntime, message: str) -> tuple[float, int]:
    """As ``RunExecutor._stream`` calls it: seconds to the first text delta, and the deltas."""
    context = AgentContext(
        tenant_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        backend=NoBackend(),
    )
    items = cast(list[TResponseInputItem], [{"role": "user", "content": message}])
    started = time.perf_counter()
    result = Runner.run_streamed(
        runtime.registry.agent(runtime.registry.default),
        items,
        context=context,
        run_config=runtime.run_config(),
    )
    first: float | None = None
    deltas = 0
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas += 1
            if first is None:
                first = time.perf_counter() - started
    assert first is not None
    return first, deltas


# --- figures ----------------------------------------------------------------------------------


def line(name: str, timings: Sequence[float]) -> float:
    p50, p99 = p50_p99_ms(timings)
    print(f"  {name:<44} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms")
    return p50


def print_cpu(cpu: tuple[float, float, float], elapsed: float) -> None:
    print(
        f"  CPU meanwhile, share of one core: API {cpu[0] / elapsed:.0%},"
        f" worker {cpu[1] / elapsed:.0%}, this client {cpu[2] / elapsed:.0%}"
        f" ({os.cpu_count()} cores)"
    )


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- (a) time to first token ------------------------------------------------------------------


@dataclass
class FirstTokens:
    """Seconds to the first text delta: through the whole system and of the runtime alone."""

    whole_system: list[float]
    alone: list[float]
    failures: int = 0

    def added(self) -> tuple[float, float]:
        """p50 and p99 of the whole system minus those of the runtime alone, in ms."""
        whole, alone = p50_p99_ms(self.whole_system), p50_p99_ms(self.alone)
        return whole[0] - alone[0], whole[1] - alone[1]


async def first_tokens(
    system: System, runtime: AgentRuntime, requests: int, message: str
) -> tuple[FirstTokens, list[StreamResult], list[StreamResult]]:
    """Alternates in rounds between streams through the system and the runtime alone, after a
    warm-up of ten of each; the timings, the measured streams and the warm-up's."""
    rounds = 10 if requests >= 20 else 1
    per_round = max(1, requests // rounds)
    timings = FirstTokens([], [])
    results: list[StreamResult] = []
    warm: list[StreamResult] = []
    async with http_client(system.base, 10) as client:
        for _ in range(10):  # warm-up: pools open, code paths hot
            warm.append(await chat_stream(client, system.headers, message, deadline=60))
            await runtime_run(runtime, message)
        for _ in range(rounds):
            for _ in range(per_round):
                result = await chat_stream(client, system.headers, message, deadline=60)
                results.append(result)
                if result.problem is None and result.first_delta is not None:
                    timings.whole_system.append(result.first_delta - result.started)
            for _ in range(per_round):
                timings.alone.append((await runtime_run(runtime, message))[0])
    return timings, results, warm


async def time_to_first_token(
    system: System, runtime: AgentRuntime, requests: int, words: int
) -> FirstTokens:
    timings, results, warm = await first_tokens(system, runtime, requests, message_of(words))
    print(
        f"Time to first token: {len(results)} sequential streams of a {words}-word message,"
        " offline model with no token delay"
    )
    floor = line("in-process runtime (Runner.run_streamed)", timings.alone)
    whole = line("whole system (POST /chat/stream to SSE delta)", timings.whole_system)
    added = whole - floor
    print(f"  {'added by API, Postgres, Celery, Redis, SSE':<44} p50 {added:8.2f} ms", end="")
    print(f"   (target <= {TTFT_TARGET_MS:.0f} ms: {met(added <= TTFT_TARGET_MS)})")
    print_stages(results)
    timings.failures = report_problems("time-to-first-token", warm + results, system.database)
    return timings


def print_stages(results: Sequence[StreamResult], *, since: float | None = None) -> None:
    """Where the time to the first delta goes, p50 of each step from sending the POST; with
    ``since``, also p50 and last of each step from that moment (when every client started)."""
    ok = [r for r in results if r.problem is None]

    def p50(stage: str) -> str:
        times = [getattr(r, stage) - r.started for r in ok if getattr(r, stage) is not None]
        return f"{statistics.median(times) * 1e3:.1f} ms" if times else "-"

    print(
        f"  {'p50 from the POST: response headers':<44} {p50('headers')},"
        f" run.started {p50('run_started')}, first delta {p50('first_delta')}"
    )
    if since is None:
        return

    def spread(stage: str) -> str:
        times = [getattr(r, stage) - since for r in ok if getattr(r, stage) is not None]
        return f"{statistics.median(times):.2f}/{max(times):.2f} s" if times else "-"

    print(
        f"  {'p50/last from the start: response headers':<44} {spread('headers')},"
        f" run.started {spread('run_started')}, first delta {spread('first_delta')},"
        f" end {spread('ended')}"
    )


# --- (b) fan-out ------------------------------------------------------------------------------


async def fan_out(
    system: System,
    runtime: AgentRuntime,
    clients: int,
    runs_each: int,
    words: int,
    model: str = "",
) -> int:
    """``model``: what the header adds after the processes (the offline model says nothing)."""
    base, headers, database = system.base, system.headers, system.database
    api, worker = system.api, system.worker
    message = message_of(words)

    async def runtime_client() -> int:
        return sum([(await runtime_run(runtime, message))[1] for _ in range(runs_each)])

    started = time.perf_counter()
    produced = sum(await asyncio.gather(*(runtime_client() for _ in range(clients))))
    runtime_rate = produced / (time.perf_counter() - started)

    async with http_client(base, clients + 10) as client:

        async def sse_client() -> list[StreamResult]:
            return [
                await chat_stream(client, headers, message, deadline=300) for _ in range(runs_each)
            ]

        cpu = cpu_seconds(api.pid), cpu_seconds(worker.pid), time.process_time()
        started = time.perf_counter()
        nested = await asyncio.gather(*(sse_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu = (
            cpu_seconds(api.pid) - cpu[0],
            cpu_seconds(worker.pid) - cpu[1],
            time.process_time() - cpu[2],
        )
    results = [result for group in nested for result in group]
    events = sum(r.events for r in results)
    deltas = sum(r.deltas for r in results)
    rate = events / elapsed
    print(
        f"Fan-out: {clients} concurrent SSE clients x {runs_each} runs of a {words}-word message,"
        f" one API process, one worker process{model}"
    )
    print(f"  {'in-process runtime, text deltas produced':<44} {runtime_rate:9,.0f} /s")
    print(f"  {'whole system, message.delta delivered':<44} {deltas / elapsed:9,.0f} /s")
    print(
        f"  {'whole system, all events delivered':<44} {rate:9,.0f} /s"
        f"   ({events:,} events in {elapsed:.1f} s; target >= {FANOUT_TARGET:,.0f}/s:"
        f" {met(rate >= FANOUT_TARGET)})"
    )
    print_stages(results, since=started)
    print_cpu(cpu, elapsed)
    return report_problems("fan-out", results, database)


# --- (c) many slow streams --------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    open_streams: int
    api_redis: int
    api_pubsub: int
    worker_redis: int
    api_pg: int
    worker_pg: int
    worker_pg_idle_in_transaction: int
    api_rss: float
    worker_rss: float
    running: int


@dataclass
class Sampler:
    api: Service
    worker: Service
    database: str
    gauge: Gauge
    period: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self, redis_client: redis.Redis, conn: psycopg.Connection[Any]) -> Sample:
        clients = cast(list[dict[str, Any]], redis_client.client_list())
        api_redis, api_pubsub = redis_clients_of(clients, self.api.pid)
        worker_redis, _ = redis_clients_of(clients, self.worker.pid)
        running = conn.execute("SELECT count(*) FROM run WHERE status = 'running'").fetchone()
        pg: dict[tuple[str, str], int] = {
            (name, state): count
            for name, state, count in conn.execute(
                "SELECT application_name, state, count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() GROUP BY 1, 2"
            ).fetchall()
        }
        return Sample(
            at=time.perf_counter(),
            open_streams=self.gauge.open,
            api_redis=api_redis,
            api_pubsub=api_pubsub,
            worker_redis=worker_redis,
            api_pg=sum(n for (name, _), n in pg.items() if name == "switchboard-api"),
            worker_pg=sum(n for (name, _), n in pg.items() if name == "switchboard-worker"),
            worker_pg_idle_in_transaction=pg.get(("switchboard-worker", "idle in transaction"), 0),
            api_rss=rss_mib(self.api.pid),
            worker_rss=rss_mib(self.worker.pid),
            running=int(running[0]) if running else 0,
        )

    def once(self) -> Sample:
        with (
            redis.Redis.from_url(REDIS_URL) as redis_client,
            psycopg.connect(f"host=127.0.0.1 user=postgres dbname={self.database}") as conn,
        ):
            return self.sample(redis_client, conn)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        with (
            redis.Redis.from_url(REDIS_URL) as redis_client,
            psycopg.connect(f"host=127.0.0.1 user=postgres dbname={self.database}") as conn,
        ):
            conn.autocommit = True
            while not self._stop.wait(self.period):
                self.samples.append(self.sample(redis_client, conn))


def peak_running(database: str, run_ids: Sequence[str]) -> tuple[int, dict[str, int]]:
    """The most runs running at once, from their start and finish times; status counts."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        rows = conn.execute(
            "SELECT status, started_at, finished_at FROM run WHERE id = ANY(%s::uuid[])",
            (list(run_ids),),
        ).fetchall()
    statuses: dict[str, int] = {}
    changes: list[tuple[Any, int]] = []
    for status, started_at, finished_at in rows:
        statuses[status] = statuses.get(status, 0) + 1
        if started_at is not None:
            changes.append((started_at, 1))
            if finished_at is not None:
                changes.append((finished_at, -1))
    running = peak = 0
    for _, change in sorted(changes):  # at equal times -1 sorts first: a handover is not overlap
        running += change
        peak = max(peak, running)
    return peak, statuses


async def slow_streams(
    system: System,
    streams: int,
    words: int,
    delay_ms: float,
    ramp_seconds: float,
    deadline: float,
    threads: int,
) -> int:
    base, headers, database = system.base, system.headers, system.database
    api, worker = system.api, system.worker
    message = message_of(words)
    gauge = Gauge()
    sampler = Sampler(api, worker, database, gauge)
    async with http_client(base, streams + 10) as client:
        for _ in range(3):  # warm-up
            warm = await chat_stream(client, headers, message_of(3), deadline=60)
            assert warm.problem is None, warm.problem
        idle = await asyncio.to_thread(sampler.once)
        cpu = cpu_seconds(api.pid), cpu_seconds(worker.pid), time.process_time()

        async def opener(index: int) -> StreamResult:
            await asyncio.sleep(ramp_seconds * index / streams)
            return await chat_stream(client, headers, message, deadline=deadline, gauge=gauge)

        sampler.start()
        started = time.perf_counter()
        try:
            results = await asyncio.gather(*(opener(i) for i in range(streams)))
        finally:
            sampler.stop()
        elapsed = time.perf_counter() - started
        cpu = (
            cpu_seconds(api.pid) - cpu[0],
            cpu_seconds(worker.pid) - cpu[1],
            time.process_time() - cpu[2],
        )
        after = await asyncio.to_thread(sampler.once)
    samples = sampler.samples
    peak, statuses = peak_running(database, [r.run_id for r in results if r.run_id])
    completed = sum(r.problem is None for r in results)
    ideal = words * delay_ms / 1000
    durations = [r.ended - r.started for r in results if r.ended is not None]
    firsts = [r.first_delta - r.started for r in results if r.first_delta is not None]
    while_open = [s for s in samples if s.open_streams > 0] or samples
    busy = [s for s in samples if s.open_streams >= gauge.peak * 0.9] or while_open

    print(
        f"Slow streams: {streams} streams opened over {ramp_seconds:.0f} s, {words} words at"
        f" {delay_ms:.0f} ms each (OFFLINE_MODEL_TOKEN_DELAY_MS), one API process,"
        f" one worker process with {threads} threads (the rest of the runs wait in the queue)"
    )
    print(
        f"  complete and in order: {completed} of {streams}"
        f" ({sum(r.events for r in results):,} events in {elapsed:.1f} s);"
        f" runs in Postgres: {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}"
    )
    print(f"  streams open at once (client side): peak {gauge.peak}")
    print(
        f"  runs running at once: peak {peak} (from started_at/finished_at),"
        f" {max((s.running for s in samples), default=0)} sampled"
        f"   (target >= {SLOW_RUNNING_TARGET}: {met(peak >= SLOW_RUNNING_TARGET)})"
    )
    line(f"model alone: {words} x {delay_ms:.0f} ms = {ideal:.1f} s; stream duration", durations)
    line("time to first delta under this load", firsts)
    print_stages(results)
    redis_counts = sorted({s.api_redis for s in while_open})
    print(
        f"  API Redis connections: {idle.api_redis} idle before; with streams open"
        f" {min(redis_counts, default=0)} to {max(redis_counts, default=0)}"
        f" ({len(while_open)} samples, {max((s.api_pubsub for s in while_open), default=0)}"
        f" pub/sub); {after.api_redis} after"
    )
    print(
        f"  worker connections: Redis {idle.worker_redis} idle before,"
        f" peak {max((s.worker_redis for s in samples), default=0)};"
        f" Postgres peak {max((s.worker_pg for s in samples), default=0)}"
        f" (idle in transaction: peak"
        f" {max((s.worker_pg_idle_in_transaction for s in samples), default=0)});"
        f" API Postgres peak {max((s.api_pg for s in samples), default=0)}"
    )
    print(
        f"  RSS: API {idle.api_rss:.0f} MiB idle, {max(s.api_rss for s in samples):.0f} MiB peak,"
        f" {after.api_rss:.0f} MiB after; worker {idle.worker_rss:.0f} MiB idle,"
        f" {max(s.worker_rss for s in samples):.0f} MiB peak, {after.worker_rss:.0f} MiB after"
    )
    if busy:
        print(
            f"  with >= 90% of the peak streams open ({len(busy)} samples):"
            f" API {statistics.mean(s.api_rss for s in busy):.0f} MiB,"
            f" worker {statistics.mean(s.worker_rss for s in busy):.0f} MiB,"
            f" API Redis connections {min(s.api_redis for s in busy)}"
            f" to {max(s.api_redis for s in busy)}"
        )
    print_cpu(cpu, elapsed)
    return report_problems("slow", results, database)


# --- (d) a real model's path: the local OpenAI-compatible server -----------------------------


@dataclass
class ModelServer:
    """tests/support/openai_server.py, as a process of its own or as threads of this one."""

    base_url: str
    service: Service | None = None
    server: OpenAIServer | None = None

    def stop(self) -> str:
        """Stops it; what it served, and the errors it logged."""
        if self.server is not None:
            self.server.stop()
            return (
                f"served {len(self.server.requests)} requests;"
                f" {len(self.server.disconnects)} clients hung up before the end"
            )
        assert self.service is not None
        self.service.stop()
        log = self.service.log_path.read_text(errors="replace")
        served = [text for text in log.splitlines() if text.startswith("served ")]
        errors = log.count("Traceback")
        return f"{served[-1] if served else 'no summary'}; {errors} errors in its log"


def start_model_server(mode: str, first_token_ms: float, logs: Path) -> ModelServer:
    if mode == "thread":
        server = OpenAIServer(first_token_delay=first_token_ms / 1000).start()
        return ModelServer(server.base_url, server=server)
    port = free_port()
    service = start(
        f"openai-server-{first_token_ms:g}ms",
        [
            "-m",
            "tests.support.openai_server",
            f"--port={port}",
            "--token-delay-ms=0",
            f"--first-token-delay-ms={first_token_ms:g}",
        ],
        {},
        logs,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_until_it_answers(service, f"{base_url}/models")
    return ModelServer(base_url, service=service)


@dataclass
class ProviderRun:
    """What the provider part measured, for the comparison with the offline model."""

    rows: list[tuple[str, FirstTokens]] = field(default_factory=list)
    failures: int = 0


async def provider_part(
    args: argparse.Namespace,
    skip: set[str],
    env: dict[str, str],
    work: Path,
    database: str,
    services: list[Service],
) -> ProviderRun:
    """For each first-token delay a server, and for each wire format an API and a worker on it
    (``OPENAI_*`` as in production), measured as the offline model is. One event loop for the
    whole part: the Agents SDK's HTTP client is one per process and keeps its connections."""
    settings = load_settings()
    delays = [float(d) for d in args.provider_delays_ms.split(",")]
    message = message_of(args.ttft_words)
    run = ProviderRun()
    for delay in delays:
        server = start_model_server(args.provider_server, delay, work)
        try:
            for api in args.provider_apis.split(","):
                model = f"local OpenAI-compatible server, {api}, first-token delay {delay:g} ms"
                openai = settings.openai.model_copy(
                    update={
                        "api_key": SecretStr("sk-bench"),
                        "base_url": AnyUrl(server.base_url),
                        "api": api,
                    }
                )
                runtime = create_agent_runtime(openai, settings.offline)
                provider_env = {
                    **env,
                    "OPENAI_API_KEY": "sk-bench",
                    "OPENAI_BASE_URL": server.base_url,
                    "OPENAI_API": api,
                }
                name = f"{api}-{delay:g}ms"
                threads = max(args.clients, 8)
                system = start_system(provider_env, work, database, name, threads, services)
                pair = [system.api, system.worker]
                if server.service is not None:
                    pair.append(server.service)
                try:
                    await watched(prepare(system), pair)
                    if "ttft" not in skip:
                        measured = first_tokens(system, runtime, args.ttft_requests, message)
                        timings, results, warm = await watched(measured, pair)
                        print(
                            f"Time to first token: {len(results)} sequential streams of a"
                            f" {args.ttft_words}-word message, {model}"
                        )
                        line("in-process runtime (Runner.run_streamed)", timings.alone)
                        line("whole system (POST /chat/stream to SSE delta)", timings.whole_system)
                        added = timings.added()
                        print(
                            f"  {'added by API, Postgres, Celery, Redis, SSE':<44}"
                            f" p50 {added[0]:8.2f} ms   p99 {added[1]:8.2f} ms"
                        )
                        print_stages(results)
                        timings.failures = report_problems(
                            "time-to-first-token", warm + results, database
                        )
                        run.failures += timings.failures
                        run.rows.append((f"{api}, first-token delay {delay:g} ms", timings))
                    if "fanout" not in skip and delay == delays[0]:
                        for words in (int(w) for w in args.provider_fanout_words.split(",")):
                            fanout = fan_out(
                                system, runtime, args.clients, args.fanout_runs, words, f", {model}"
                            )
                            run.failures += await watched(fanout, pair)
                finally:
                    system.worker.stop()
                    system.api.stop()
        finally:
            print(f"  model server ({args.provider_server}, {delay:g} ms): {server.stop()}")
    return run


def compare_added(offline: FirstTokens | None, provider: ProviderRun) -> None:
    """The time the system adds to the first token with each model, side by side."""
    if not provider.rows:
        return
    print(
        "Time to first token added by the whole system (whole system minus the runtime alone on"
        " the same model; p99: the difference of the two p99s)"
    )
    print(f"  {'model':<56} {'p50 added':>10} {'p99 added':>10}   provider - offline, p50")
    rows = [("offline, no token delay", offline)] if offline is not None else []
    for label, timings in [*rows, *provider.rows]:
        assert timings is not None
        p50, p99 = timings.added()
        print(f"  {label:<56} {p50:7.2f} ms {p99:7.2f} ms", end="")
        if offline is None or timings is offline:
            print()
            continue
        difference = p50 - offline.added()[0]
        within = abs(difference) <= PROVIDER_MATCH_MS
        print(f"   {difference:+7.2f} ms (target within {PROVIDER_MATCH_MS:g} ms: {met(within)})")
    if offline is None:
        print("  (no offline figures: the ttft part was skipped)")


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttft-requests", type=int, default=200)
    parser.add_argument("--ttft-words", type=int, default=8)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--fanout-runs", type=int, default=1, help="sequential runs per client")
    parser.add_argument(
        "--fanout-words",
        default="200,1500",
        help="reply lengths, comma-separated: short replies weigh each run's fixed costs",
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--slow-words", type=int, default=30)
    parser.add_argument("--slow-delay-ms", type=float, default=100)
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=250,
        help="runs the slow part's worker holds at once (0: one per stream); the rest queue",
    )
    parser.add_argument("--ramp-seconds", type=float, default=0, help="spread stream openings")
    parser.add_argument("--deadline", type=float, default=90, help="per slow stream, seconds")
    parser.add_argument(
        "--provider-delays-ms",
        default="0,200",
        help="the model server's first-token delays, comma-separated: a system for each",
    )
    parser.add_argument(
        "--provider-apis",
        default="chat_completions",
        help="OPENAI_API wire formats, comma-separated: chat_completions,responses",
    )
    parser.add_argument(
        "--provider-fanout-words",
        default="200",
        help="reply lengths of the provider's fan-out, at the first of --provider-delays-ms",
    )
    parser.add_argument(
        "--provider-server",
        choices=("process", "thread"),
        default="process",
        help="the model server as a process of its own or as threads of the bench's",
    )
    parser.add_argument("--skip", default="", help="comma-separated: ttft,fanout,slow,provider")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    database, work, env = workspace(
        "stream",
        IDENTITY_LOGIN_IP_MAX_ATTEMPTS="100000000",
        OFFLINE_MODEL_TOKEN_DELAY_MS="0",
    )
    settings = load_settings()
    runtime = create_agent_runtime(settings.openai, settings.offline)
    services: list[Service] = []
    failures = 0

    redis.Redis.from_url(REDIS_URL).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")

        offline: FirstTokens | None = None
        if not {"ttft", "fanout"} <= skip:
            system = start_system(env, work, database, "fast", max(args.clients, 8), services)
            pair = [system.api, system.worker]
            asyncio.run(watched(prepare(system), pair))
            if "ttft" not in skip:
                ttft = time_to_first_token(system, runtime, args.ttft_requests, args.ttft_words)
                offline = asyncio.run(watched(ttft, pair))
                failures += offline.failures
            if "fanout" not in skip:
                for words in (int(w) for w in args.fanout_words.split(",")):
                    fanout = fan_out(system, runtime, args.clients, args.fanout_runs, words)
                    failures += asyncio.run(watched(fanout, pair))
            system.worker.stop()
            system.api.stop()

        if "provider" not in skip and not {"ttft", "fanout"} <= skip:
            provider = asyncio.run(provider_part(args, skip, env, work, database, services))
            failures += provider.failures
            compare_added(offline, provider)

        if "slow" not in skip:
            slow_env = {**env, "OFFLINE_MODEL_TOKEN_DELAY_MS": str(args.slow_delay_ms)}
            threads = args.worker_threads or args.streams
            system = start_system(slow_env, work, database, "slow", threads, services)
            pair = [system.api, system.worker]
            asyncio.run(watched(prepare(system), pair))
            slow = slow_streams(
                system,
                args.streams,
                args.slow_words,
                args.slow_delay_ms,
                args.ramp_seconds,
                args.deadline,
                threads,
            )
            failures += asyncio.run(watched(slow, pair))
    except BaseException:
        kept = True
        raise
    finally:
        tear_down(services, database=database, work=work, failed=bool(failures), kept=kept)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
