"""Runs waiting for tool approvals: many held by one worker process with nothing per run, then
resumed in a batch, through the whole system, in one run.

Starts ``python -m api`` (one uvicorn process) and ONE Celery worker process on the ``runs``
queue (thread pool, ``--worker-threads`` 16) with the built-in offline model, on a PostgreSQL
database and a Redis index (``BENCH_REDIS_DB``, 12) of their own, signs up one user on a plan
with no limits (a tenant with no subscription gets the free plan's 10 runs a minute and 2 at
once), then:

- baseline, one request at a time (``--baseline`` of each, after a warm-up): a plain chat's time
  to first token (``POST /chat/stream`` to its first ``message.delta``), and a chat of
  ``cancel my subscription`` on ``POST /chat/stream``: its time to ``run.requires_action`` (the
  path before the pause, the non-paused path's comparable cost), then its approval (``POST
  /runs/{id}/approvals``) from the 202 to the next event on the same stream, on an idle system.
- the batch: ``--runs`` chats of ``cancel my subscription`` (``POST /chat``, each in its own
  conversation, ``--concurrency`` requests in flight), each followed by ``GET /runs/{id}/stream``
  kept open as a client would, until every run is ``requires_action``. The worker's runs
  executing (its /metrics ``runs_active`` gauge, on ``CELERY_METRICS_PORT``), its threads, its
  RSS (VmRSS), its Redis connections, and the Redis lease keys (``run:*:lease``) are printed
  before the chats, while all wait, and after the resume; they are also sampled every 0.25 s.
- then every run is approved (``POST /runs/{id}/approvals``, ``--concurrency`` in flight) and
  measured: resume throughput (runs from the first decision sent to the last ``run.completed``
  per second), and for each run the time from its decision's 202 to the next event after the
  pause on its open stream (p50, p99; also from the decision sent, as the 202 can reach this
  client after the event does).

The worker's 16 threads are far fewer than the runs: a worker that kept a thread per waiting
run could hold only 16 and the rest would stay queued (the bench would report them missing);
16 is also enough to overlap each run's Postgres and Redis round trips on the worker's one
event loop (production runs 200: docs/operations.md).

Every run is checked: its stream's ids 1, 2, 3, ... with no gap or duplicate across the pause
(``data.seq`` equal, one run), ``run.requires_action`` followed by ``tool.output``,
``run.completed`` last, the Redis replay buffer holding the same number of events, and
``succeeded`` in Postgres. The exit status is 1 if any failed. The bench flushes its Redis index
before and after, so it refuses to start while another client is connected to that index.

    uv run --frozen python bench/approval_bench.py [--runs 1000] [--concurrency 50]
        [--worker-threads 16] [--baseline 50] [--deadline 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

# A Redis index no other bench uses (bench.services reads it on import); the tests use 15.
os.environ.setdefault("BENCH_REDIS_DB", "12")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.services, as a script
from bench.services import (
    REDIS_URL,
    Service,
    cpu_seconds,
    create_database,
    free_port,
    p50_p99_ms,
    put_on_plan,
    run_module,
    start_api,
    start_worker,
    tear_down,
    wait_until_it_answers,
    workspace,
)
from bench.stream_bench import (
    chat_stream,
    http_client,
    message_of,
    redis_clients_of,
    sign_up,
    sse_events,
    watched,
)

CANCEL = "cancel my subscription"
TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled"})


# --- one run through the pause ----------------------------------------------------------------


@dataclass
class Paused:
    """One run of ``cancel my subscription``, followed on one stream across its pause."""

    posted: float = 0.0
    run_id: str | None = None
    paused_at: float | None = None
    pause_seq: int = 0
    approvals: list[str] = field(default_factory=list)
    decision_sent: float | None = None
    decision_answered: float | None = None
    next_at: float | None = None
    next_kind: str = ""
    ended: float | None = None
    kinds: list[str] = field(default_factory=list)
    problem: str | None = None
    waiting: asyncio.Event = field(default_factory=asyncio.Event)
    decider: asyncio.Task[None] | None = None

    def fail(self, problem: str) -> None:
        self.problem = self.problem or problem
        self.waiting.set()


async def follow(response: httpx.Response, run: Paused, *, decide: Any = None) -> None:
    """Reads the run's stream to its terminal event, checking the numbering; ``decide``, if
    given, is started at the pause (the sequential baseline decides from inside the stream)."""
    last = 0
    async for seq, kind, data in sse_events(response):
        now = time.perf_counter()
        if seq is None or seq != last + 1 or data.get("seq") != seq:
            run.fail(f"{kind} has id {seq} (data.seq {data.get('seq')}) after id {last}")
            return
        if run.run_id is None:
            run.run_id = str(data.get("run_id"))
        elif data.get("run_id") != run.run_id:
            run.fail(f"{kind} id {seq} belongs to run {data.get('run_id')}")
            return
        last = seq
        run.kinds.append(kind)
        if kind == "run.requires_action":
            run.paused_at, run.pause_seq = now, seq
            run.approvals = [str(a["id"]) for a in data.get("approvals", [])]
            run.waiting.set()
            if decide is not None:  # decided while this loop goes on reading
                run.decider = asyncio.create_task(decide(run))
        elif run.paused_at is not None and run.next_at is None:
            run.next_at, run.next_kind = now, kind
        if kind in TERMINAL:
            run.ended = now
            if kind != "run.completed":
                run.fail(f"ended with {kind}: {data}")
            elif run.paused_at is None:
                run.fail("ended without run.requires_action")
            elif run.next_kind != "tool.output":
                run.fail(f"{run.next_kind} came first after the pause, not tool.output")
            return
    run.fail(f"stream closed after event {last} without a terminal event")


async def approve(client: httpx.AsyncClient, headers: dict[str, str], run: Paused) -> None:
    decisions = [{"id": approval, "approve": True} for approval in run.approvals]
    run.decision_sent = time.perf_counter()
    answered = await client.post(
        f"/api/v1/runs/{run.run_id}/approvals", json={"decisions": decisions}, headers=headers
    )
    run.decision_answered = time.perf_counter()
    if answered.status_code != 202:
        run.fail(f"decision answered {answered.status_code}: {answered.text[:200]}")


# --- baseline: one request at a time ----------------------------------------------------------


async def sequential(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> tuple[list[float], list[Paused], int]:
    """``count`` plain chats (seconds to the first delta) and ``count`` approval chats on
    ``POST /chat/stream``, decided from inside the stream, alternating; and the failures."""
    firsts: list[float] = []
    paused: list[Paused] = []
    failures = 0
    message = message_of(8)
    for index in range(count + 5):  # the first five warm up
        plain = await chat_stream(client, headers, message, deadline=60)
        run = Paused(posted=time.perf_counter())
        try:
            async with asyncio.timeout(60):
                async with client.stream(
                    "POST", "/api/v1/chat/stream", json={"message": CANCEL}, headers=headers
                ) as response:
                    if response.status_code != 200:
                        run.fail(f"HTTP {response.status_code}")
                    else:
                        await follow(response, run, decide=lambda r: approve(client, headers, r))
            if run.decider is not None:
                await run.decider
        except TimeoutError:
            run.fail("no terminal event within 60 s")
        if plain.problem is not None or run.problem is not None:
            failures += 1
            print(f"  baseline stream failed: {plain.problem or run.problem}")
        if index < 5:
            continue
        if plain.first_delta is not None:
            firsts.append(plain.first_delta - plain.started)
        paused.append(run)
    return firsts, paused, failures


# --- what the worker holds --------------------------------------------------------------------


def proc_status(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for text in Path(f"/proc/{pid}/status").read_text().splitlines():
            if text.startswith(f"{field_name}:"):
                return int(text.split()[1])
    return -1


@dataclass
class Holding:
    runs_active: float
    leases: int
    threads: int
    rss_mib: float
    redis_connections: int
    redis_pubsub: int
    api_rss_mib: float
    statuses: dict[str, int]


@dataclass
class Watcher:
    """Reads what the worker holds: its gauge, threads, memory and connections, and Redis."""

    worker: Service
    api: Service
    metrics_url: str
    database: str
    worker_threads: int
    samples: list[tuple[float, float, int]] = field(default_factory=list)

    def runs_active(self) -> float:
        text = httpx.get(self.metrics_url, timeout=5).text
        for metric in text.splitlines():
            if metric.startswith("runs_active "):
                return float(metric.split()[1])
        return float("nan")

    def leases(self) -> int:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            return sum(1 for _ in client.scan_iter(match="run:*:lease", count=1000))
        finally:
            client.close()

    def statuses(self) -> dict[str, int]:
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={self.database}") as conn:
            rows = conn.execute("SELECT status, count(*) FROM run GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}

    def now(self) -> Holding:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            clients = client.client_list()
        finally:
            client.close()
        connections, pubsub = redis_clients_of(clients, self.worker.pid)
        return Holding(
            runs_active=self.runs_active(),
            leases=self.leases(),
            threads=proc_status(self.worker.pid, "Threads"),
            rss_mib=proc_status(self.worker.pid, "VmRSS") / 1024,
            redis_connections=connections,
            redis_pubsub=pubsub,
            api_rss_mib=proc_status(self.api.pid, "VmRSS") / 1024,
            statuses=self.statuses(),
        )

    def sample(self) -> None:
        self.samples.append((time.perf_counter(), self.runs_active(), self.leases()))

    async def sampling(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    def peaks(self, start: float, end: float) -> tuple[float, int, int]:
        """Peak runs_active and leases between two instants, and the number of samples."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        return (
            max((s[1] for s in inside), default=float("nan")),
            max((s[2] for s in inside), default=-1),
            len(inside),
        )


def print_holdings(rows: Sequence[tuple[str, Holding]]) -> None:
    print(
        f"  {'':<34} {'runs_active':>11} {'leases':>7} {'threads':>8} {'worker RSS':>11}"
        f" {'Redis conns (pub/sub)':>22} {'API RSS':>9}   runs in Postgres"
    )
    for label, h in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(h.statuses.items())) or "none"
        print(
            f"  {label:<34} {h.runs_active:11.0f} {h.leases:7d} {h.threads:8d}"
            f" {h.rss_mib:7.0f} MiB {h.redis_connections:>15d} ({h.redis_pubsub})"
            f" {h.api_rss_mib:5.0f} MiB   {states}"
        )


# --- the batch --------------------------------------------------------------------------------


async def start_and_follow(
    chats: httpx.AsyncClient,
    streams: httpx.AsyncClient,
    headers: dict[str, str],
    run: Paused,
    gate: asyncio.Semaphore,
) -> None:
    try:
        async with gate:
            run.posted = time.perf_counter()
            accepted = await chats.post("/api/v1/chat", json={"message": CANCEL}, headers=headers)
        if accepted.status_code != 202:
            run.fail(f"chat answered {accepted.status_code}: {accepted.text[:200]}")
            return
        run.run_id = str(accepted.json()["run_id"])
        url = f"/api/v1/runs/{run.run_id}/stream"
        async with streams.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                run.fail(f"stream answered {response.status_code}")
                return
            await follow(response, run)
    except httpx.HTTPError as exc:
        run.fail(f"{type(exc).__name__}: {exc!r}")


async def decide_gated(
    client: httpx.AsyncClient, headers: dict[str, str], run: Paused, gate: asyncio.Semaphore
) -> None:
    try:
        async with gate:
            await approve(client, headers, run)
    except httpx.HTTPError as exc:
        run.fail(f"decision: {type(exc).__name__}: {exc!r}")


def line(name: str, timings: Sequence[float], unit: str = "ms") -> None:
    p50, p99 = p50_p99_ms(timings)
    print(f"  {name:<58} p50 {p50:8.2f} {unit}   p99 {p99:8.2f} {unit}   ({len(timings)})")


def replay_lengths(run_ids: Sequence[str]) -> dict[str, int]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        pipe = client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.xlen(f"run:{run_id}:events")
        return dict(zip(run_ids, (int(n) for n in pipe.execute()), strict=True))
    finally:
        client.close()


def final_statuses(database: str, run_ids: Sequence[str]) -> dict[str, str]:
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        rows = conn.execute(
            "SELECT id::text, status FROM run WHERE id = ANY(%s::uuid[])", (list(run_ids),)
        ).fetchall()
    return {str(run_id): str(status) for run_id, status in rows}


def check_runs(label: str, runs: Sequence[Paused], database: str) -> int:
    """The checks every run must pass once it ended; prints the failures, returns their count."""
    ids = [r.run_id for r in runs if r.run_id]
    statuses = final_statuses(database, ids)
    lengths = replay_lengths(ids)
    for r in runs:
        if r.problem is None and r.run_id is not None:
            if statuses.get(r.run_id) != "succeeded":
                r.problem = f"{statuses.get(r.run_id)} in Postgres"
            elif lengths.get(r.run_id) != len(r.kinds):
                r.problem = f"replay holds {lengths.get(r.run_id)} events, stream {len(r.kinds)}"
        elif r.run_id is None:
            r.problem = r.problem or "no run"
    failed = [r for r in runs if r.problem is not None]
    print(
        f"  {label}: {len(runs) - len(failed)} of {len(runs)} runs succeeded with one gap-free"
        f" stream across the pause; runs in Postgres:"
        f" {', '.join(f'{n} {s}' for s, n in sorted(Counter(statuses.values()).items()))}"
    )
    for problem, count in Counter(r.problem for r in failed).most_common(5):
        print(f"    FAILED {count:5d} x {problem}")
    for r in failed[:3]:
        print(f"    e.g. run {r.run_id}: {r.problem}; events {r.kinds}")
    return len(failed)


async def batch(
    base: str,
    headers: dict[str, str],
    count: int,
    concurrency: int,
    deadline: float,
    watcher: Watcher,
) -> int:
    runs = [Paused() for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()
    sampler = asyncio.create_task(watcher.sampling(stop))
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    timeout = httpx.Timeout(deadline, connect=60.0, pool=300.0)
    before = await asyncio.to_thread(watcher.now)
    cpu0 = (cpu_seconds(watcher.api.pid), cpu_seconds(watcher.worker.pid), time.process_time())
    async with (
        http_client(base, concurrency) as chats,
        httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as streams,
    ):
        started = time.perf_counter()
        followers = [
            asyncio.create_task(start_and_follow(chats, streams, headers, r, gate)) for r in runs
        ]
        waits = asyncio.gather(*(r.waiting.wait() for r in runs))
        try:
            await asyncio.wait_for(waits, deadline)
        except TimeoutError:
            for r in runs:
                if not r.waiting.is_set():
                    r.fail(f"not requires_action within {deadline:.0f} s")
        all_waiting = time.perf_counter()
        cpu1 = (cpu_seconds(watcher.api.pid), cpu_seconds(watcher.worker.pid), time.process_time())
        await asyncio.sleep(2)  # the worker's last pauses finish their bookkeeping
        waiting = await asyncio.to_thread(watcher.now)
        ready = [r for r in runs if r.problem is None and r.paused_at is not None]

        first_decision = time.perf_counter()
        deciders = [asyncio.create_task(decide_gated(chats, headers, r, gate)) for r in ready]
        await asyncio.gather(*deciders)
        decided = time.perf_counter()
        _, pending = await asyncio.wait(followers, timeout=deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for r in runs:
            if r.ended is None:
                r.fail(f"no terminal event within {deadline:.0f} s of the decisions")
        last_end = max((r.ended for r in ready if r.ended is not None), default=decided)
        cpu2 = (cpu_seconds(watcher.api.pid), cpu_seconds(watcher.worker.pid), time.process_time())
    await asyncio.sleep(2)
    stop.set()
    await sampler
    after = await asyncio.to_thread(watcher.now)

    print(
        f"Approvals: {count} chats of '{CANCEL}' (POST /chat, {concurrency} in flight, each with"
        f" its stream open), one API process, one worker process with"
        f" {watcher.worker_threads} threads"
    )
    to_pause = [r.paused_at - r.posted for r in runs if r.paused_at is not None]
    print(
        f"  all {len(ready)} requires_action {all_waiting - started:.1f} s after the first chat"
        f" ({len(ready) / (all_waiting - started):.0f} runs/s to the pause;"
        f" CPU: API {(cpu1[0] - cpu0[0]) / (all_waiting - started):.0%},"
        f" worker {(cpu1[1] - cpu0[1]) / (all_waiting - started):.0%},"
        f" this client {(cpu1[2] - cpu0[2]) / (all_waiting - started):.0%} of a core)"
    )
    line("chat to run.requires_action under this load", to_pause)
    print("  What the worker holds (runs_active: its /metrics gauge; leases: run:*:lease keys)")
    print_holdings(
        [("before the chats", before), ("all waiting", waiting), ("after resume", after)]
    )
    peak_chats = watcher.peaks(started, all_waiting)
    peak_resume = watcher.peaks(first_decision, last_end)
    print(
        f"  sampled every 0.25 s: runs_active peak {peak_chats[0]:.0f}, leases peak"
        f" {peak_chats[1]} while the chats ran ({peak_chats[2]} samples); runs_active peak"
        f" {peak_resume[0]:.0f}, leases peak {peak_resume[1]} while resuming"
        f" ({peak_resume[2]} samples)"
    )
    resumed = [r for r in ready if r.ended is not None and r.problem is None]
    span = last_end - first_decision
    print(
        f"  decisions: {len(ready)} sent in {decided - first_decision:.2f} s"
        f" ({len(ready) / (decided - first_decision):.0f}/s answered 202);"
        f" last run.completed {span:.2f} s after the first decision"
    )
    print(
        f"  resume throughput: {len(resumed)} runs / {span:.2f} s ="
        f" {len(resumed) / span:.1f} runs/s to their terminal event"
        f" (CPU: API {(cpu2[0] - cpu1[0]) / (last_end - all_waiting):.0%},"
        f" worker {(cpu2[1] - cpu1[1]) / (last_end - all_waiting):.0%},"
        f" this client {(cpu2[2] - cpu1[2]) / (last_end - all_waiting):.0%} of a core)"
    )
    from_202 = [
        r.next_at - r.decision_answered for r in resumed if r.next_at and r.decision_answered
    ]
    from_sent = [r.next_at - r.decision_sent for r in resumed if r.next_at and r.decision_sent]
    line("decision's 202 to the next event (tool.output)", from_202)
    line("decision sent to the next event", from_sent)
    line(
        "decision's 202 to run.completed",
        [r.ended - r.decision_answered for r in resumed if r.ended and r.decision_answered],
    )
    early = sum(1 for gap in from_202 if gap < 0)
    print(f"  next event before this client read the 202: {early} of {len(from_202)}")
    return check_runs("batch", runs, watcher.database)


def refuse_a_shared_index() -> None:
    """Exits if another client is connected to the bench's Redis index: the bench flushes it
    before and after, which would wipe another run's queues and events (and theirs, ours)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        me = client.client_id()
        index = int(client.connection_pool.connection_kwargs.get("db", 0))
        others = [c for c in client.client_list() if int(c["db"]) == index and int(c["id"]) != me]
    finally:
        client.close()
    if others:
        sys.exit(
            f"Redis index {index} has {len(others)} other clients (another bench or test run?):"
            " choose a free one with BENCH_REDIS_DB"
        )


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50, help="chats, decisions in flight")
    parser.add_argument("--worker-threads", type=int, default=16)
    parser.add_argument("--baseline", type=int, default=50, help="sequential chats of each kind")
    parser.add_argument("--deadline", type=float, default=600, help="seconds, per phase")
    args = parser.parse_args()

    refuse_a_shared_index()
    metrics_port = free_port()
    database, work, env = workspace(
        "approval",
        IDENTITY_LOGIN_IP_MAX_ATTEMPTS="100000000",
        OFFLINE_MODEL_TOKEN_DELAY_MS="0",
        CELERY_METRICS_PORT=str(metrics_port),
    )
    services: list[Service] = []
    failures = 0
    redis.Redis.from_url(REDIS_URL).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")
        api, base = start_api(env, work, "api")
        services.append(api)
        worker = start_worker(
            env, work, "worker", pool="threads", concurrency=args.worker_threads, queues="runs"
        )
        services.append(worker)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until_it_answers(worker, metrics_url)
        watcher = Watcher(worker, api, metrics_url, database, args.worker_threads)
        failures = asyncio.run(watched(measure(args, base, database, watcher), services))
    except BaseException:
        kept = True
        raise
    finally:
        tear_down(services, database=database, work=work, failed=bool(failures), kept=kept)
    sys.exit(1 if failures else 0)


async def measure(args: argparse.Namespace, base: str, database: str, watcher: Watcher) -> int:
    headers = await sign_up(base)
    # No limits: the bench measures the stack, not the free plan's 2 runs at once.
    put_on_plan(database, headers, "bench-unlimited")
    failures = 0
    async with http_client(base, 4) as client:
        firsts, baseline, failures = await sequential(client, headers, args.baseline)
    print(
        f"Baseline: {args.baseline} of each, one request at a time, alternating, after 5 of each"
        " to warm up (offline model, no token delay)"
    )
    line("plain chat: POST /chat/stream to its first message.delta", firsts)
    ok = [r for r in baseline if r.problem is None]
    line(
        "approval chat: POST /chat/stream to run.requires_action",
        [r.paused_at - r.posted for r in ok if r.paused_at],
    )
    line(
        "approval alone: decision's 202 to the next event",
        [r.next_at - r.decision_answered for r in ok if r.next_at and r.decision_answered],
    )
    line(
        "approval alone: decision sent to the next event",
        [r.next_at - r.decision_sent for r in ok if r.next_at and r.decision_sent],
    )
    failures += check_runs("baseline", baseline, database)
    failures += await batch(base, headers, args.runs, args.concurrency, args.deadline, watcher)
    return failures


if __name__ == "__main__":
    main()
