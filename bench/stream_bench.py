"""Agent-run streams through Switchboard, against an in-process server streaming the same agent,
driven by the same client in one run.

The Switchboard side runs as ``make dev`` runs it (the Procfile): ``python -m api`` (one uvicorn
process, its access log and other logs at ``LOG_LEVEL`` INFO, rendered as in development with
``--log-format console``) and one Celery worker on the ``runs`` queue (``--pool=threads
--concurrency=200 --loglevel=INFO``, gossip and mingle on, ``CELERY_METRICS_PORT`` set), both
with a ``PROMETHEUS_MULTIPROC_DIR``, the built-in offline model and
``OFFLINE_MODEL_TOKEN_DELAY_MS=0``, on a PostgreSQL database of the bench's own. For the time to
first token and the fan-out, every API and worker pair gets a redis-server of its own (no
persistence, started and stopped by the bench; pub/sub and buffers on index 0, the broker on 1,
as ``make dev`` has them on one server), so that pairs running side by side never take each
other's jobs from the ``runs`` queue:

- ``Switchboard, LOG_LEVEL=INFO``: the settings of ``make dev``, the one the targets are about;
- ``Switchboard, LOG_LEVEL=WARNING``, and any other level of ``--log-levels``: the same with
  less logging (the access log and the task logs are INFO lines), for the cost of the default;
- with ``--tracing``, ``Switchboard, ..., traced``: the first level again with
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointed at an OTLP/HTTP sink of the bench's own (a process
  that answers 200 to every export and counts them) and
  ``OTEL_TRACES_SAMPLER=parentbased_always_on``, for the cost of tracing. Where tracing is not
  installed it measures the same thing twice: the sink's request count says so. Without
  ``--tracing`` no ``OTEL_*`` variable reaches any process.

The baseline is ``bench/inprocess_server.py``: one FastAPI process on uvicorn (uvloop,
httptools) that runs the same agent runtime (``create_agent_runtime``) inside the request and
streams the SDK's events directly as SSE, in the same wire shape and with the same events per
run (``run.queued``, ``run.started``, a ``message.delta`` per word, ``message.completed``,
``run.completed``); no Postgres, Redis or Celery, no logging. The bench signs up one user per
pair (on a plan without limits) and measures:

- time to first token: ``--ttft-requests`` sequential ``POST /api/v1/chat/stream`` of an
  ``--ttft-words`` message to each server, to the first ``message.delta`` frame, alternating
  between the servers (and the runtime alone in this process, ``Runner.run_streamed`` to its
  first text delta, for reference) in ten rounds so noise hits all alike. Added by Switchboard:
  its p50 minus the in-process server's, and its p99 minus the in-process server's p99; targets
  at most 5 and 15 ms.
- fan-out: ``--clients`` concurrent streams, one ``--fanout-words`` run each (one burst), then
  the same with ``--fanout-long-words``; ``--fanout-rounds`` rounds, each a burst on every
  server in turn (Switchboard, in-process server, the other pairs); events per second delivered
  (first POST to last terminal event) in each round and their median, Switchboard's over the
  in-process server's against the targets (0.8x for the short replies, 1.0x for the long ones).
  The CPU time of each process (utime + stime of all its threads, from /proc) from the burst's
  start to one second after its end, per run: the ``runs`` worker's against the target of 9 ms
  per short run, the API's, the pair's Redis's and the in-process server's beside it. Before the
  rounds, for reference, the text deltas per second the runtime alone produces in this process
  at the same concurrency and its CPU per run (the SDK and the offline model).
- the cost of default logging (INFO against each other level of ``--log-levels``) and of
  tracing (traced against untraced), as a share of each figure: how much longer the time to
  first token is, how many fewer events per second; target at most 10% each.
- slow streams: ``--streams`` streams opened at once (or over ``--ramp-seconds``) on a fresh
  API and worker on ``BENCH_REDIS_DB`` (13) of the shared Redis (``--worker-threads`` runs at
  once, 250 by default, the rest wait in the queue as in production) with
  ``OFFLINE_MODEL_TOKEN_DELAY_MS=--slow-delay-ms``. Samples every 0.5 s the Redis connections of
  each process (``CLIENT LIST`` entries matched to the process's sockets in /proc), their
  Postgres connections (``pg_stat_activity``), their RSS and the runs ``running``; afterwards
  the exact peak of running runs from their start and finish times. Baseline: the duration the
  model alone needs (words x delay).
- provider: the time to first token and the fan-out again, with a real provider's path in
  place of the offline model: the local OpenAI-compatible server (tests/support/openai_server.py)
  streaming its default reply (the message's words) with no token delay and a fixed first-token
  delay, each of ``--provider-delays-ms`` (0 and 200) in turn. For each delay and each wire
  format of ``--provider-apis`` a fresh API and worker run on ``BENCH_REDIS_DB`` with
  ``OPENAI_API_KEY=sk-bench``, ``OPENAI_BASE_URL=<server>/v1`` and ``OPENAI_API``; the baseline
  is the agent runtime built in this process from the same settings (``create_agent_runtime``),
  talking to the same server. The fan-out runs at the first delay only
  (``--provider-fanout-words``). Last, the time each model's whole system adds to the first
  token, side by side, and the provider's minus the offline model's, against the target: within
  1 ms. The server runs as a process of its own (``--provider-server process``, the default) so
  that it costs both sides the same loopback hop; ``--provider-server thread`` runs it as
  threads of this process. Its requests are counted and its log searched for errors.

Every stream is checked, from either server: 200, ids 1, 2, 3, ... with no gap or duplicate
(``data.seq`` equal), one run, deltas adding up to the reply, ``run.completed`` last, then the
server closes it. A stream with no terminal event after its deadline counts as lost. Targets are
printed with "met" or "NOT met", never asserted; the exit status is 1 if any stream failed its
check, and then the warnings and errors of the processes' logs are summarised. The machine's
load average is printed at the start and at the end.

    uv run --frozen python bench/stream_bench.py [--ttft-requests 200] [--clients 100]
        [--fanout-words 200] [--fanout-long-words 1500] [--fanout-rounds 2] [--fanout-runs 1]
        [--log-levels INFO,WARNING] [--log-format console] [--tracing]
        [--worker-concurrency 200] [--streams 1000] [--slow-words 30] [--ramp-seconds 0]
        [--provider-delays-ms 0,200] [--provider-apis chat_completions]
        [--provider-fanout-words 200] [--provider-server process]
        [--skip ttft,fanout,slow,provider]

``--skip slow,provider`` is the quick run: the time to first token and the fan-out only.
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
from agents import Runner
from pydantic import AnyUrl, SecretStr

from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.services, as a script
from bench.inprocess_server import agent_context, run_input
from bench.services import (
    REDIS_URL,
    Service,
    cpu_seconds,
    create_database,
    descendants,
    free_port,
    otlp_sink_stats,
    p50_p99_ms,
    put_on_plan,
    run_module,
    start,
    start_api,
    start_otlp_sink,
    start_redis,
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
INPROCESS = "in-process server"
RUNTIME = "runtime alone in this process"
TTFT_ADDED_P50_TARGET_MS = 5.0
TTFT_ADDED_P99_TARGET_MS = 15.0
FANOUT_RATIO_TARGET = 0.8
FANOUT_LONG_RATIO_TARGET = 1.0
WORKER_CPU_TARGET_MS = 9.0
COST_TARGET = 0.10  # of default logging and of tracing, on each figure
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
    """An API and a ``runs`` worker as the Procfile starts them: the worker's ``--loglevel`` is
    ``LOG_LEVEL`` (it sets the level of every process's logs), gossip and mingle on, a metrics
    port; both with a ``PROMETHEUS_MULTIPROC_DIR``, as ``make dev`` gives them."""
    metrics = logs / f"metrics-{name}"
    metrics.mkdir()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    api, base = start_api(env, logs, f"api-{name}")
    services.append(api)
    worker = start_worker(
        {**env, "CELERY_METRICS_PORT": str(free_port())},
        logs,
        f"worker-{name}",
        pool="threads",
        concurrency=threads,
        queues="runs",
        loglevel=env.get("LOG_LEVEL", "INFO"),
        gossip_and_mingle=True,
    )
    services.append(worker)
    return System(api, worker, base, database)


def start_pair(
    env: dict[str, str],
    logs: Path,
    database: str,
    name: str,
    label: str,
    threads: int,
    services: list[Service],
    **settings: str,
) -> System:
    """An API and a ``runs`` worker on a redis-server of their own, with these settings."""
    redis_service, redis_base = start_redis(logs, f"redis-{name}")
    services.append(redis_service)
    pair_env = {
        **env,
        "REDIS_URL": f"{redis_base}/0",
        "CELERY_BROKER_URL": f"{redis_base}/1",
        "CELERY_RESULT_BACKEND": f"{redis_base}/2",
        **settings,
    }
    system = start_system(pair_env, logs, database, name, threads, services)
    system.redis, system.label = redis_service, label
    return system


def start_inprocess(env: dict[str, str], logs: Path, services: list[Service]) -> Side:
    """bench/inprocess_server.py on a free port, once it answers."""
    port = free_port()
    server = start(
        "inprocess-server", ["-m", "bench.inprocess_server", f"--port={port}"], env, logs
    )
    services.append(server)
    base = f"http://127.0.0.1:{port}"
    wait_until_it_answers(server, f"{base}/health")
    return Side(INPROCESS, base, {"server": server})


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
    redis: Service | None = None  # a redis-server of the pair's own
    label: str = "whole system"

    def side(self) -> Side:
        processes = {"API": self.api, "worker": self.worker}
        if self.redis is not None:
            processes["Redis"] = self.redis
        return Side(self.label, self.base, processes, self.headers)


@dataclass
class Side:
    """A server the bench's client streams chats from, and its processes by role (their CPU is
    read around each fan-out burst)."""

    label: str
    base: str
    processes: dict[str, Service]
    # The in-process server reads no token; it gets a header all the same.
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": "Bearer bench"})


async def prepare(system: System) -> None:
    """A user on a plan without limits (the bench measures the stack, not the free plan's
    allowance), and one stream through the system: the worker is up and consuming."""
    system.headers = await sign_up(system.base)
    put_on_plan(system.database, system.headers, "bench-unlimited")
    await first_stream(system.side())


async def first_stream(side: Side) -> None:
    async with http_client(side.base, 1) as client:
        first = await chat_stream(client, side.headers, message_of(3), deadline=60)
    if first.problem is not None:
        raise RuntimeError(f"the first stream of {side.label} failed: {first.problem}")


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


async def runtime_run(runtime: AgentRuntime, message: str) -> tuple[float, int]:
    """As ``RunExecutor._stream`` calls it (and the in-process server): seconds to the first
    text delta, and the deltas."""
    started = time.perf_counter()
    result = Runner.run_streamed(
        runtime.registry.agent(runtime.registry.default),
        run_input(message),
        context=agent_context(),
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


async def runtime_burst(
    runtime: AgentRuntime, clients: int, runs_each: int, message: str
) -> tuple[float, float]:
    """The runtime alone at ``clients`` concurrent runs: text deltas per second, and this
    process's CPU per run in ms."""

    async def one_client() -> int:
        return sum([(await runtime_run(runtime, message))[1] for _ in range(runs_each)])

    cpu = time.process_time()
    started = time.perf_counter()
    produced = sum(await asyncio.gather(*(one_client() for _ in range(clients))))
    elapsed = time.perf_counter() - started
    return produced / elapsed, (time.process_time() - cpu) / (clients * runs_each) * 1e3


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


@dataclass
class Comparison:
    """Who is compared with whom: Switchboard under ``make dev``'s settings against the
    in-process server, and the costs, each ``(what, with it, without it)`` by label."""

    switchboard: str
    baseline: str
    costs: list[tuple[str, str, str]]


def cost_line(what: str, share: float, detail: str) -> None:
    """A cost as a share of the figure without it (negative: it measured better with it)."""
    print(
        f"  cost of {what}: {share:+.1%} {detail}"
        f" (target <= {COST_TARGET:.0%}: {met(share <= COST_TARGET)})"
    )


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


@dataclass
class FirstTokenRun:
    """Seconds to the first delta by server label (and ``RUNTIME``), with the streams."""

    timings: dict[str, list[float]]
    results: dict[str, list[StreamResult]]
    warm: dict[str, list[StreamResult]]


async def first_tokens(
    sides: Sequence[Side], runtime: AgentRuntime | None, requests: int, message: str
) -> FirstTokenRun:
    """``requests`` sequential streams from each server (and runs of the runtime alone), in
    rounds of each in turn, after a warm-up of ten of each."""
    rounds = 10 if requests >= 20 else 1
    per_round = max(1, requests // rounds)
    run = FirstTokenRun(
        {side.label: [] for side in sides},
        {side.label: [] for side in sides},
        {side.label: [] for side in sides},
    )
    if runtime is not None:
        run.timings[RUNTIME] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(http_client(s.base, 10)) for s in sides]
        for _ in range(10):  # warm-up: pools open, code paths hot
            for side, client in zip(sides, clients, strict=True):
                warm = await chat_stream(client, side.headers, message, deadline=60)
                run.warm[side.label].append(warm)
            if runtime is not None:
                await runtime_run(runtime, message)
        for _ in range(rounds):
            for side, client in zip(sides, clients, strict=True):
                for _ in range(per_round):
                    result = await chat_stream(client, side.headers, message, deadline=60)
                    run.results[side.label].append(result)
                    if result.problem is None and result.first_delta is not None:
                        run.timings[side.label].append(result.first_delta - result.started)
            if runtime is not None:
                for _ in range(per_round):
                    run.timings[RUNTIME].append((await runtime_run(runtime, message))[0])
    return run


WIDE = 40  # the label column of the side-by-side figures


def print_first_tokens(
    run: FirstTokenRun, sides: Sequence[Side], comparison: Comparison, words: int, database: str
) -> int:
    requests = len(run.results[comparison.switchboard])
    print(
        f"Time to first token: {requests} sequential streams from each server, a message of"
        f" {words} words, offline model with no token delay, the servers in turn in 10 rounds;"
        " POST to the first message.delta frame"
    )
    p50, p99 = p50_p99_ms(run.timings[RUNTIME])
    print(f"  {RUNTIME + ', to its first delta':<{WIDE}} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    base = p50_p99_ms(run.timings[comparison.baseline])
    for side in sides:
        p50, p99 = p50_p99_ms(run.timings[side.label])
        print(f"  {side.label:<{WIDE}} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms", end="")
        if side.label == comparison.baseline:
            print()
            continue
        print(f"   added: p50 {p50 - base[0]:6.2f} ms, p99 {p99 - base[1]:6.2f} ms")
    whole = p50_p99_ms(run.timings[comparison.switchboard])
    added = whole[0] - base[0], whole[1] - base[1]
    print(
        f"  added by {comparison.switchboard} over the {comparison.baseline}:"
        f" p50 {added[0]:.2f} ms (target <= {TTFT_ADDED_P50_TARGET_MS:g} ms:"
        f" {met(added[0] <= TTFT_ADDED_P50_TARGET_MS)}),"
        f" p99 {added[1]:.2f} ms, the difference of the p99s"
        f" (target <= {TTFT_ADDED_P99_TARGET_MS:g} ms: {met(added[1] <= TTFT_ADDED_P99_TARGET_MS)})"
    )
    for what, with_it, without in comparison.costs:
        on, off = p50_p99_ms(run.timings[with_it]), p50_p99_ms(run.timings[without])
        for at, index in (("p50", 0), ("p99", 1)):
            cost_line(
                f"{what}, time to first token {at}",
                on[index] / off[index] - 1,
                f"longer ({on[index]:.2f} ms with it, {off[index]:.2f} ms without)",
            )
    print(f"  {'p50 from the POST, ms':<{WIDE}} {'headers':>9} {'run.started':>12} {'delta':>8}")
    for side in sides:
        ok = [r for r in run.results[side.label] if r.problem is None]
        cells = [
            median_since(ok, stage, None) for stage in ("headers", "run_started", "first_delta")
        ]
        print(f"    {side.label:<{WIDE - 2}} {cells[0]:>9} {cells[1]:>12} {cells[2]:>8}")
    failures = 0
    for side in sides:
        streams = run.warm[side.label] + run.results[side.label]
        failures += report_problems(f"{side.label} time-to-first-token", streams, database)
    return failures


def median_since(results: Sequence[StreamResult], stage: str, since: float | None) -> str:
    """p50 of a stage's time in ms from each stream's POST, or, with ``since``, p50/last in
    seconds from that moment."""
    if since is None:
        times = [getattr(r, stage) - r.started for r in results if getattr(r, stage) is not None]
        return f"{statistics.median(times) * 1e3:.1f}" if times else "-"
    times = [getattr(r, stage) - since for r in results if getattr(r, stage) is not None]
    return f"{statistics.median(times):.2f}/{max(times):.2f}" if times else "-"


def print_stages(results: Sequence[StreamResult], *, since: float | None = None) -> None:
    """Where the time to the first delta goes, p50 of each step from sending the POST; with
    ``since``, also p50 and last of each step from that moment (when every client started)."""
    ok = [r for r in results if r.problem is None]

    def p50(stage: str) -> str:
        text = median_since(ok, stage, None)
        return "-" if text == "-" else f"{text} ms"

    print(
        f"  {'p50 from the POST: response headers':<44} {p50('headers')},"
        f" run.started {p50('run_started')}, first delta {p50('first_delta')}"
    )
    if since is None:
        return

    def spread(stage: str) -> str:
        text = median_since(ok, stage, since)
        return "-" if text == "-" else f"{text} s"

    print(
        f"  {'p50/last from the start: response headers':<44} {spread('headers')},"
        f" run.started {spread('run_started')}, first delta {spread('first_delta')},"
        f" end {spread('ended')}"
    )


# --- (b) fan-out ------------------------------------------------------------------------------


@dataclass
class Burst:
    """One burst of concurrent streams from one server."""

    started: float
    elapsed: float
    results: list[StreamResult]
    cpu: dict[str, float]  # seconds, by process role, and "client" for this process

    @property
    def events(self) -> int:
        return sum(r.events for r in self.results)

    @property
    def deltas(self) -> int:
        return sum(r.deltas for r in self.results)

    @property
    def rate(self) -> float:
        return self.events / self.elapsed

    def cpu_per_run_ms(self, role: str) -> float:
        return self.cpu[role] / len(self.results) * 1e3


async def burst(
    side: Side, clients: int, runs_each: int, message: str, *, settle: float = 1.0
) -> Burst:
    """``clients`` concurrent clients, ``runs_each`` streams each in turn. The processes' CPU
    is read from just before the first POST to ``settle`` seconds after the last stream ended,
    so that what a process does after a run's last event (a worker's tail) is counted."""
    async with http_client(side.base, clients + 10) as client:

        async def sse_client() -> list[StreamResult]:
            return [
                await chat_stream(client, side.headers, message, deadline=300)
                for _ in range(runs_each)
            ]

        before = {role: cpu_seconds(p.pid) for role, p in side.processes.items()}
        client_cpu = time.process_time()
        started = time.perf_counter()
        nested = await asyncio.gather(*(sse_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
    await asyncio.sleep(settle)
    cpu = {role: cpu_seconds(p.pid) - before[role] for role, p in side.processes.items()}
    cpu["client"] = client_cpu
    return Burst(started, elapsed, [r for group in nested for r in group], cpu)


async def fan_out_rounds(
    sides: Sequence[Side], clients: int, runs_each: int, words: int, rounds: int
) -> dict[str, list[Burst]]:
    """``rounds`` rounds, each a burst on every server in turn."""
    bursts: dict[str, list[Burst]] = {side.label: [] for side in sides}
    message = message_of(words)
    for _ in range(rounds):
        for side in sides:
            bursts[side.label].append(await burst(side, clients, runs_each, message))
    return bursts


def print_fan_out(
    bursts: dict[str, list[Burst]],
    sides: Sequence[Side],
    comparison: Comparison,
    *,
    clients: int,
    runs_each: int,
    words: int,
    runtime_alone: tuple[float, float],
    ratio_target: float,
    cpu_target_ms: float | None,
    database: str,
) -> int:
    rounds = len(bursts[comparison.switchboard])
    print(
        f"Fan-out: {clients} concurrent SSE clients x {runs_each} run(s) of a {words}-word reply"
        f" ({words + 4} events per run), {rounds} rounds of one burst on each server in turn;"
        " events/s delivered, from the first POST to the last terminal event"
    )
    rate, cpu = runtime_alone
    print(
        f"  {RUNTIME + ', text deltas':<{WIDE}} {rate:8,.0f}/s"
        f"   CPU per run {cpu:.2f} ms (the SDK and the offline model)"
    )
    medians: dict[str, float] = {}
    for side in sides:
        runs = bursts[side.label]
        medians[side.label] = statistics.median(b.rate for b in runs)
        each = ", ".join(f"{b.rate:,.0f}" for b in runs)
        per_run = ", ".join(
            f"{role} {statistics.median(b.cpu_per_run_ms(role) for b in runs):.2f}"
            for role in [*side.processes, "client"]
        )
        print(
            f"  {side.label:<{WIDE}} {medians[side.label]:8,.0f}/s median of {each}"
            f";  CPU per run, ms: {per_run}"
        )
    ratio = medians[comparison.switchboard] / medians[comparison.baseline]
    print(
        f"  {comparison.switchboard} / {comparison.baseline}, events/s: {ratio:.2f}x"
        f" (target >= {ratio_target:g}x: {met(ratio >= ratio_target)})"
    )
    if cpu_target_ms is not None:
        main = bursts[comparison.switchboard]
        worker = statistics.median(b.cpu_per_run_ms("worker") for b in main)
        api = statistics.median(b.cpu_per_run_ms("API") for b in main)
        server = statistics.median(b.cpu_per_run_ms("server") for b in bursts[comparison.baseline])
        print(
            f"  runs worker CPU per {words}-word run, {comparison.switchboard}: {worker:.2f} ms"
            f" (target <= {cpu_target_ms:g} ms: {met(worker <= cpu_target_ms)});"
            f" its API {api:.2f} ms; the {comparison.baseline} {server:.2f} ms"
        )
    for what, with_it, without in comparison.costs:
        on, off = medians[with_it], medians[without]
        cost_line(
            f"{what}, fan-out events/s",
            1 - on / off,
            f"fewer ({on:,.0f}/s with it, {off:,.0f}/s without)",
        )
    print(
        f"  {'last round, p50/last from its start, s':<{WIDE}} {'headers':>11}"
        f" {'run.started':>11} {'delta':>11} {'end':>11}   CPU, share of one core"
    )
    for side in sides:
        last = bursts[side.label][-1]
        ok = [r for r in last.results if r.problem is None]
        stages = ("headers", "run_started", "first_delta", "ended")
        cells = " ".join(f"{median_since(ok, stage, last.started):>11}" for stage in stages)
        cores = ", ".join(f"{role} {sec / last.elapsed:.0%}" for role, sec in last.cpu.items())
        print(f"    {side.label:<{WIDE - 2}} {cells}   {cores}")
    failures = 0
    for side in sides:
        results = [r for b in bursts[side.label] for r in b.results]
        failures += report_problems(f"{side.label} fan-out", results, database)
    return failures


async def fan_out_vs_runtime(
    system: System, runtime: AgentRuntime, clients: int, runs_each: int, words: int, model: str
) -> int:
    """One burst through ``system`` against the runtime alone at the same concurrency (the
    provider part); ``model``: what the header adds after the processes."""
    message = message_of(words)
    alone, _ = await runtime_burst(runtime, clients, runs_each, message)
    side = system.side()
    measured = await burst(side, clients, runs_each, message)
    elapsed = measured.elapsed
    print(
        f"Fan-out: {clients} concurrent SSE clients x {runs_each} runs of a {words}-word message,"
        f" one API process, one worker process{model}"
    )
    print(f"  {'in-process runtime, text deltas produced':<44} {alone:9,.0f} /s")
    print(f"  {'whole system, message.delta delivered':<44} {measured.deltas / elapsed:9,.0f} /s")
    print(
        f"  {'whole system, all events delivered':<44} {measured.rate:9,.0f} /s"
        f"   ({measured.events:,} events in {elapsed:.1f} s)"
    )
    print_stages(measured.results, since=measured.started)
    cpu = measured.cpu
    print_cpu((cpu["API"], cpu["worker"], cpu["client"]), elapsed)
    return report_problems("fan-out", measured.results, system.database)


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
                threads = args.worker_concurrency
                system = start_pair(
                    provider_env, work, database, name, "whole system", threads, services
                )
                pair = [system.api, system.worker]
                if system.redis is not None:
                    pair.append(system.redis)
                if server.service is not None:
                    pair.append(server.service)
                try:
                    await watched(prepare(system), pair)
                    if "ttft" not in skip:
                        side = system.side()
                        measured = first_tokens([side], runtime, args.ttft_requests, message)
                        both = await watched(measured, pair)
                        results, warm = both.results[side.label], both.warm[side.label]
                        timings = FirstTokens(both.timings[side.label], both.timings[RUNTIME])
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
                            fanout = fan_out_vs_runtime(
                                system, runtime, args.clients, args.fanout_runs, words, f", {model}"
                            )
                            run.failures += await watched(fanout, pair)
                finally:
                    for service in (system.worker, system.api, system.redis):
                        if service is not None:
                            service.stop()
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


# --- Switchboard against the in-process server -----------------------------------------------


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def start_servers(
    args: argparse.Namespace,
    levels: Sequence[str],
    env: dict[str, str],
    work: Path,
    database: str,
    services: list[Service],
) -> tuple[list[System], Side, str | None]:
    """A pair per log level (the first is ``make dev``'s), a traced pair on the first level and
    the OTLP sink with ``--tracing``, and the in-process server; the sink's URL."""
    threads = args.worker_concurrency
    pairs = [
        start_pair(
            env,
            work,
            database,
            level.lower(),
            f"Switchboard, LOG_LEVEL={level}",
            threads,
            services,
            LOG_LEVEL=level,
        )
        for level in levels
    ]
    sink_url = None
    if args.tracing:
        sink, sink_url = start_otlp_sink(work)
        services.append(sink)
        traced = {
            "LOG_LEVEL": levels[0],
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
        }
        label = f"Switchboard, LOG_LEVEL={levels[0]}, traced"
        pairs.append(start_pair(env, work, database, "traced", label, threads, services, **traced))
    return pairs, start_inprocess(env, work, services), sink_url


async def against_inprocess(
    args: argparse.Namespace,
    skip: set[str],
    runtime: AgentRuntime,
    pairs: Sequence[System],
    inprocess: Side,
    comparison: Comparison,
    database: str,
    watch: Sequence[Service],
) -> tuple[FirstTokens | None, int]:
    """The time to first token and the fan-out of every pair and the in-process server, side
    by side; the offline model's figures for the provider part, and the failed streams."""
    for system in pairs:
        await watched(prepare(system), watch)
    await watched(first_stream(inprocess), watch)
    sides = [pairs[0].side(), inprocess, *(system.side() for system in pairs[1:])]
    offline: FirstTokens | None = None
    failures = 0
    if "ttft" not in skip:
        message = message_of(args.ttft_words)
        measured = await watched(first_tokens(sides, runtime, args.ttft_requests, message), watch)
        failures += print_first_tokens(measured, sides, comparison, args.ttft_words, database)
        offline = FirstTokens(measured.timings[comparison.switchboard], measured.timings[RUNTIME])
    if "fanout" not in skip:
        for side in sides:  # warm-up: every worker thread and pooled connection in use once
            warm = await watched(burst(side, args.clients, 1, message_of(20), settle=0.5), watch)
            failures += report_problems(f"{side.label} warm-up", warm.results, database)
        sizes = (
            (args.fanout_words, FANOUT_RATIO_TARGET, WORKER_CPU_TARGET_MS),
            (args.fanout_long_words, FANOUT_LONG_RATIO_TARGET, None),
        )
        for words, ratio_target, cpu_target in sizes:
            if words <= 0:
                continue
            message = message_of(words)
            alone = await runtime_burst(runtime, args.clients, args.fanout_runs, message)
            rounds = fan_out_rounds(
                sides, args.clients, args.fanout_runs, words, args.fanout_rounds
            )
            bursts = await watched(rounds, watch)
            failures += print_fan_out(
                bursts,
                sides,
                comparison,
                clients=args.clients,
                runs_each=args.fanout_runs,
                words=words,
                runtime_alone=alone,
                ratio_target=ratio_target,
                cpu_target_ms=cpu_target,
                database=database,
            )
    return offline, failures


def describe(pairs: Sequence[System], args: argparse.Namespace) -> None:
    print(
        f"Servers: each Switchboard pair is python -m api (one uvicorn process) and one celery"
        f" runs worker (--pool=threads --concurrency={args.worker_concurrency}, --loglevel as"
        f" LOG_LEVEL), LOG_FORMAT={args.log_format}, on a redis-server of its own;"
        f" the {INPROCESS} is bench/inprocess_server.py (one uvicorn process, no logging)"
    )
    print(f"  pairs: {'; '.join(system.label for system in pairs)}")


def print_sink(url: str, traced: System) -> None:
    during = otlp_sink_stats(url)
    for service in (traced.worker, traced.api):
        service.stop()  # an exporter flushes what it holds when its process ends
    after = otlp_sink_stats(url)
    print(
        f"OTLP sink: {during['requests']} export requests ({during['bytes']:,} bytes) by the end"
        f" of the measures, {after['requests']} ({after['bytes']:,} bytes) once the traced"
        f" pair had stopped; by path: {after['paths']}"
    )
    if not after["requests"]:
        print(
            "  nothing was exported: tracing is not installed in this tree, so the traced pair"
            " measured the same system as the untraced one"
        )


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Agent-run streams through Switchboard against an in-process server."
    )
    parser.add_argument("--ttft-requests", type=int, default=200, help="per server")
    parser.add_argument("--ttft-words", type=int, default=8)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--fanout-runs", type=int, default=1, help="sequential runs per client")
    parser.add_argument(
        "--fanout-words",
        type=int,
        default=200,
        help="the short replies (0: none): each run's fixed costs weigh; the worker CPU target",
    )
    parser.add_argument(
        "--fanout-long-words",
        type=int,
        default=1500,
        help="the long replies (0: none): the relay of events weighs",
    )
    parser.add_argument(
        "--fanout-rounds", type=int, default=2, help="bursts on each server, in turn"
    )
    parser.add_argument(
        "--log-levels",
        default="INFO,WARNING",
        help="LOG_LEVEL of each Switchboard pair, comma-separated; the first is the one the"
        " targets are about (make dev's: INFO), the others measure what it costs",
    )
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="LOG_FORMAT of every Switchboard process: console is make dev's (development),"
        " json production's",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="a traced pair too (OTLP/HTTP to a sink of the bench's own, sampling everything)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=200,
        help="threads of the runs worker of each pair and of the provider part (the Procfile's)",
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
    levels = [level.strip().upper() for level in args.log_levels.split(",") if level.strip()]
    known = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    if not levels or not set(levels) <= known or len(set(levels)) != len(levels):
        parser.error(f"--log-levels: distinct levels among {', '.join(sorted(known))}")

    # No process is traced unless --tracing says so, whatever the calling shell has.
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    database, work, env = workspace(
        "stream",
        IDENTITY_LOGIN_IP_MAX_ATTEMPTS="100000000",
        IDENTITY_REGISTER_IP_PER_HOUR="100000",
        OFFLINE_MODEL_TOKEN_DELAY_MS="0",
        LOG_LEVEL=levels[0],
        LOG_FORMAT=args.log_format,
    )
    settings = load_settings()
    runtime = create_agent_runtime(settings.openai, settings.offline)
    services: list[Service] = []
    failures = 0
    print(f"load average at the start: {load()} ({os.cpu_count()} cores)")

    redis.Redis.from_url(REDIS_URL).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")

        offline: FirstTokens | None = None
        if not {"ttft", "fanout"} <= skip:
            first = len(services)
            pairs, inprocess, sink_url = start_servers(args, levels, env, work, database, services)
            describe(pairs, args)
            labels = [system.label for system in pairs]
            costs = [
                (f"LOG_LEVEL={levels[0]} against {level}", labels[0], labels[index])
                for index, level in enumerate(levels[1:], start=1)
            ]
            if sink_url is not None:
                costs.append(("tracing", labels[-1], labels[0]))
            comparison = Comparison(labels[0], INPROCESS, costs)
            measures = against_inprocess(
                args, skip, runtime, pairs, inprocess, comparison, database, services[first:]
            )
            offline, failed = asyncio.run(measures)
            failures += failed
            if sink_url is not None:
                print_sink(sink_url, pairs[-1])
            for service in reversed(services[first:]):
                service.stop()

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
        print(f"load average at the end: {load()}")
        tear_down(services, database=database, work=work, failed=bool(failures), kept=kept)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
