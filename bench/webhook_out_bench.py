"""Outbound webhooks: deliveries per second and the time from a change to the receiver's 2xx,
with ONE ``webhooks`` worker process, against the raw transport in the same run.

Starts ``python -m api`` (one uvicorn process), one Celery worker on the ``runs`` queue (thread
pool, 16 threads, the offline model with no token delay) and ONE Celery worker on the
``webhooks`` queue (thread pool, ``--worker-threads`` 50, as the Procfile runs it), on a
PostgreSQL database and a Redis index (``BENCH_REDIS_DB``, 10) of their own, and a receiver: a
process of its own (uvloop, HTTP/1.1 keep-alive) that answers every POST ``200`` at once, or, on
``/hang/...``, never, and writes what it received to the bench on its stdout. Every endpoint
is created through the API (``WEBHOOKS_ALLOW_PRIVATE_TARGETS=true``, plain http on 127.0.0.1).
The bench plays beat's part for the webhooks: it sends ``webhooks.dispatch`` every
``WEBHOOKS_DISPATCH_SECONDS`` (10 s) throughout. Then:

- baseline, the transport floor: the same signed bodies POSTed to the same receiver by this
  process at the worker's concurrency (``--worker-threads`` in flight), with a plain
  ``httpx.AsyncClient``, then with the worker's own ``WebhookTransport.post`` (the SSRF guard,
  resolution, a client per endpoint of at most ``WEBHOOKS_ENDPOINT_CONCURRENCY`` connections).
- 1. burst: ``--events`` events (``run.completed``), each to one of ``--tenants`` tenants'
  endpoint (one endpoint each, round robin), written through the outbox as producers write
  them: ``record_event`` in a committed transaction, then its delivery's job sent after the
  commit (``--writers`` transactions at once). Deliveries per second from the first commit to
  the last 2xx at the receiver; each delivery's commit to 2xx.
- 2. runs: ``--runs`` chats (``POST /chat``, ``--chat-concurrency`` at a time, each waiting for
  its run's webhook before the next) of a tenant whose endpoint subscribes to
  ``run.completed``; for each, the run's final write to the receiver's 2xx. The final write's
  time is the body's ``timestamp``: ``record_event`` sets it (``datetime.now`` in the worker)
  in the transaction of the run's final write, after that write and before the commit. The 2xx
  time is the receiver's clock (the same machine's) just after it wrote its answer.
- 3. one slow tenant: its endpoint (``/hang/...``) never answers, so every attempt runs into
  ``WEBHOOKS_TIMEOUT_SECONDS`` (``--timeout-seconds``, 15 by default as in production); it gets
  ``--slow-rate`` events a second through the outbox, from ``--slow-warmup`` seconds before
  the measures to their end. Meanwhile: the runs of (2) again, then the burst of (1) again.
  The attempts the slow endpoint had in flight: the most the receiver held open at once, and
  its slots in Redis sampled every 50 ms; its attempts by result; busy put-backs
  (``webhooks_endpoint_busy_total``) and ``webhooks.deliver`` tasks run (the worker's /metrics),
  also every 5 s with the slow deliveries by status, as a timeline.

Checks, exit status 1 if any fails: every event of (1), (2) and (3) at a healthy endpoint
arrived exactly once (``webhook-id`` counted, over the whole run), each signature verified with
the ``standardwebhooks`` package (all of them) and the endpoint's secret as the API gave it,
every run ``succeeded`` in its body, every delivery row ``succeeded``. CPU of each process
(share of one core) and of the database's Postgres backends (pg_stat_activity, sampled), and
the machine's busy cores from /proc/stat, are printed for each part, with the load average.
The bench flushes its Redis index before and after, so it refuses to start while another client
is connected to that index, and stops (leaving the index as it is) if one connects during the
run: a test run or bench sharing the index would take our jobs and flush them, and we theirs.
``--own-redis`` starts a redis-server of the bench's own on a free port instead, and stops it.
``--quick``: 300 events, 30 runs, a 3 s attempt timeout and 8 s of slow warm-up.

    uv run --frozen python bench/webhook_out_bench.py [--events 2000] [--tenants 20]
        [--writers 8] [--runs 200] [--chat-concurrency 2] [--worker-threads 50]
        [--timeout-seconds 15] [--slow-tenants 1] [--slow-rate 5] [--slow-warmup 30]
        [--deadline 300] [--own-redis] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
import uvloop

# A Redis index no other bench uses (bench.services reads it on import); 11 to 15 are taken.
os.environ.setdefault("BENCH_REDIS_DB", "10")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.services, as a script
from bench import services as shared
from bench.services import (
    ROOT,
    Service,
    cpu_seconds,
    create_database,
    drop_database,
    free_port,
    p50_p99_ms,
    put_on_plan,
    run_module,
    start_api,
    start_worker,
    wait_until_it_answers,
    workspace,
)
from bench.stream_bench import local_ports_to, sign_up, watched

ENDPOINTS = "/api/v1/webhooks/endpoints"
EVENT = "run.completed"
CHAT_MESSAGE = "hello there"
RUNS_THREADS = 16
SLOT_KEY = "switchboard:webhooks:inflight:{}"

# --- the receiver, a process of its own -------------------------------------------------------

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class _Receiving(asyncio.Protocol):
    """One connection: parses HTTP/1.1 requests (Content-Length bodies), answers 200 at once,
    or never on ``/hang/...``; every POST is written to stdout as a JSON line."""

    def __init__(self, out: _Out) -> None:
        self.out = out
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.hanging: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.hanging is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.handle(method, target, headers, body)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        received = time.time()
        if method != "POST":
            self.transport.write(_OK)
            return
        if target.startswith("/hang/"):
            self.hanging = target
            self.out.open[target] += 1
            self.out.emit(
                {
                    "k": "hang",
                    "p": target,
                    "id": headers.get("webhook-id"),
                    "in": received,
                    "open": self.out.open[target],
                }
            )
            return
        self.transport.write(_OK)
        answered = time.time()
        self.out.emit(
            {
                "k": "ok",
                "p": target,
                "id": headers.get("webhook-id"),
                "ts": headers.get("webhook-timestamp"),
                "sig": headers.get("webhook-signature"),
                "in": received,
                "out": answered,
                "b": body.decode(),
            }
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.hanging is not None:
            self.out.open[self.hanging] -= 1
            self.out.emit(
                {
                    "k": "gone",
                    "p": self.hanging,
                    "at": time.time(),
                    "open": self.out.open[self.hanging],
                }
            )


class _Out:
    """Lines for stdout, written once per turn of the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lines: list[str] = []
        self.open: Counter[str] = Counter()

    def emit(self, record: dict[str, Any]) -> None:
        if not self.lines:
            self.loop.call_soon(self.flush)
        self.lines.append(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    out = _Out(loop)
    server = await loop.create_server(lambda: _Receiving(out), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- the receiver, from the bench's side ------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A POST the receiver answered 200."""

    path: str
    webhook_id: str
    webhook_timestamp: str
    signature: str
    received: float
    answered: float
    """``time.time()`` in the receiver just after it wrote its 200."""
    body: bytes
    marker: str
    """The body's ``data.id``: the run's id, or the bench's for an event it wrote."""
    event_time: float
    """The body's ``timestamp``, in seconds since the epoch."""


class Inbox:
    """What the receiver process reports, read on a thread of this process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.arrivals: list[Arrival] = []
        self.by_marker: dict[str, list[Arrival]] = defaultdict(list)
        self.hangs: list[dict[str, Any]] = []
        self.gone: list[dict[str, Any]] = []
        self.cpu = 0.0
        """CPU seconds its reading thread spent, taken off this process's in the figures."""
        self._lock = threading.Lock()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Arrival]]] = {}
        self._thread = threading.Thread(target=self._read, name="inbox", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            began = time.thread_time()
            self._take(json.loads(raw))
            self.cpu += time.thread_time() - began

    def _take(self, record: dict[str, Any]) -> None:
        kind = record["k"]
        if kind == "hang":
            self.hangs.append(record)
            return
        if kind == "gone":
            self.gone.append(record)
            return
        document = json.loads(record["b"])
        arrival = Arrival(
            path=record["p"],
            webhook_id=record["id"] or "",
            webhook_timestamp=record["ts"] or "",
            signature=record["sig"] or "",
            received=record["in"],
            answered=record["out"],
            body=record["b"].encode(),
            marker=str(document["data"]["id"]),
            event_time=datetime.fromisoformat(document["timestamp"]).timestamp(),
        )
        with self._lock:
            self.arrivals.append(arrival)
            self.by_marker[arrival.marker].append(arrival)
            waiter = self._waiters.pop(arrival.marker, None)
        if waiter is not None:
            waiter[0].call_soon_threadsafe(_resolve, waiter[1], arrival)

    async def arrival_of(self, marker: str, within: float) -> Arrival | None:
        """The first arrival of ``marker``'s event, once it is in; None after ``within`` s."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.by_marker.get(marker):
                return self.by_marker[marker][0]
            future: asyncio.Future[Arrival] = loop.create_future()
            self._waiters[marker] = (loop, future)
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            return None
        finally:
            with self._lock:
                self._waiters.pop(marker, None)

    async def all_of(self, markers: Sequence[str], within: float) -> list[str]:
        """Waits until every marker has arrived; those still missing after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            with self._lock:
                missing = [m for m in markers if not self.by_marker.get(m)]
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.02)

    def first(self, markers: Sequence[str]) -> list[Arrival]:
        with self._lock:
            return [self.by_marker[m][0] for m in markers if self.by_marker.get(m)]

    def copies(self, markers: Sequence[str]) -> dict[str, list[Arrival]]:
        """Every arrival of each marker's event (more than one: delivered twice)."""
        with self._lock:
            return {m: list(self.by_marker.get(m, [])) for m in markers}

    def all(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)


def _resolve(future: asyncio.Future[Arrival], arrival: Arrival) -> None:
    if not future.done():
        future.set_result(arrival)


def start_receiver(work: Path, services: list[Service]) -> tuple[Inbox, str]:
    """The receiver process, added to ``services`` (stopped with them) before it is waited
    for; its inbox and its address."""
    port = free_port()
    log_path = work / "receiver.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-receiver", str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    service = Service("receiver", process, log_path)
    services.append(service)
    base = f"http://127.0.0.1:{port}"
    inbox = Inbox(process)
    wait_until_it_answers(service, f"{base}/ready")
    return inbox, base


# --- what the processes and the machine spend -------------------------------------------------


class PostgresCpu:
    """CPU of the bench database's backends, by the process on the other end: pg_stat_activity
    sampled every 0.5 s, each backend's /proc/<pid>/stat read at every sample (a backend that
    ends between two samples loses its last half second)."""

    def __init__(self, database: str, owners: dict[str, int]) -> None:
        self.database = database
        self.owners = owners  # name -> pid of the process whose sockets to Postgres are looked up
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.owner_of: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.first.clear()
        self.last.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_loop, name="pg-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds of the backends since ``start``, by owner."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        spent: dict[str, float] = defaultdict(float)
        for pid, last in self.last.items():
            spent[self.owner_of.get(pid, "other")] += last - self.first.get(pid, 0.0)
        return dict(spent)

    def _sample_loop(self) -> None:
        # The database dropped under it (the bench stopping): nothing left to sample.
        with contextlib.suppress(psycopg.OperationalError):
            self._sample()

    def _sample(self) -> None:
        with psycopg.connect(
            f"host=127.0.0.1 user=postgres dbname={self.database}", autocommit=True
        ) as conn:
            mine = conn.execute("SELECT pg_backend_pid()").fetchone()
            own_pid = int(mine[0]) if mine else -1
            started = True
            while True:
                rows = conn.execute(
                    "SELECT pid, client_port FROM pg_stat_activity"
                    " WHERE datname = current_database() AND backend_type = 'client backend'"
                    " AND pid <> %s",
                    (own_pid,),
                ).fetchall()
                unknown = [(int(p), int(port or 0)) for p, port in rows if p not in self.owner_of]
                if unknown:
                    ports = {name: local_ports_to(pid, 5432) for name, pid in self.owners.items()}
                    for pid, port in unknown:
                        self.owner_of[pid] = next(
                            (name for name, found in ports.items() if port in found), "other"
                        )
                for pid, _ in rows:
                    spent = _own_cpu(int(pid))
                    if spent is None:
                        continue
                    if int(pid) not in self.first:
                        # There at the start: count from now; new since: count all of it.
                        self.first[int(pid)] = spent if started else 0.0
                    self.last[int(pid)] = spent
                started = False
                if self._stop.wait(0.5):
                    return


def _own_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Spend:
    """CPU (seconds) of each process, of this one, of the machine, over a part."""

    wall: float
    processes: dict[str, float]
    postgres: dict[str, float]
    machine_busy_cores: float

    def share(self, name: str) -> float:
        return self.processes.get(name, 0.0) / self.wall

    def line(self) -> str:
        parts = [f"{name} {seconds / self.wall:.0%}" for name, seconds in self.processes.items()]
        pg = sum(self.postgres.values())
        by_owner = ", ".join(
            f"{owner}'s {seconds / self.wall:.0%}"
            for owner, seconds in sorted(self.postgres.items(), key=lambda item: -item[1])
            if seconds > 0
        )
        ours = sum(self.processes.values()) + pg
        return (
            f"CPU over {self.wall:.1f} s, share of one core: {', '.join(parts)}; Postgres"
            f" backends of the bench database {pg / self.wall:.0%} ({by_owner or 'none'});"
            f" machine busy {self.machine_busy_cores:.2f} of {os.cpu_count()} cores,"
            f" {ours / self.wall:.2f} of them these"
        )


class Meter:
    """Starts and stops the CPU readings of a part."""

    def __init__(self, services: dict[str, Service], postgres: PostgresCpu, inbox: Inbox) -> None:
        self.services = services
        self.postgres = postgres
        self.inbox = inbox
        self._start: tuple[float, dict[str, float], tuple[int, int]] | None = None

    def _now(self) -> dict[str, float]:
        spent = {name: cpu_seconds(s.pid) for name, s in self.services.items()}
        # This process, but for the thread reading the receiver's reports (the receiver's
        # bookkeeping, not the sender's work).
        spent["bench"] = time.process_time() - self.inbox.cpu
        return spent

    def start(self) -> None:
        self.postgres.start()
        self._start = (time.perf_counter(), self._now(), machine_jiffies())

    def stop(self) -> Spend:
        assert self._start is not None
        began, before, jiffies = self._start
        after, now_jiffies, ended = self._now(), machine_jiffies(), time.perf_counter()
        busy = (now_jiffies[0] - jiffies[0]) / max(1, now_jiffies[1] - jiffies[1])
        return Spend(
            wall=ended - began,
            processes={name: after[name] - before[name] for name in before},
            postgres=self.postgres.stop(),
            machine_busy_cores=busy * (os.cpu_count() or 1),
        )


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as {'name{labels}': value}."""
    values: dict[str, float] = {}
    for text in httpx.get(url, timeout=5).text.splitlines():
        if text and not text.startswith("#"):
            key, _, value = text.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
    return values


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s series whose labels include ``labels``."""
    total = 0.0
    for key, value in values.items():
        named = key == name or key.startswith(name + "{")
        if named and all(f'{label}="{wanted}"' in key for label, wanted in labels.items()):
            total += value
    return total


# --- tenants, endpoints and the outbox --------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """A tenant and its one endpoint at the receiver."""

    headers: dict[str, str]
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    secret: str
    url: str
    path: str


def tenant_of(headers: dict[str, str]) -> uuid.UUID:
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["tid"])


async def new_hook(api: str, receiver: str, path: str) -> Hook:
    """A new tenant (signed up through the API) with one endpoint, subscribed to
    ``run.completed``, created through the API."""
    headers = await sign_up(api)
    url = f"{receiver}{path}"
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        created = await client.post(
            ENDPOINTS, json={"url": url, "events": [EVENT]}, headers=headers
        )
    assert created.status_code == 201, created.text
    body = created.json()
    return Hook(headers, tenant_of(headers), uuid.UUID(body["id"]), body["secret"], url, path)


def fake_run(marker: str) -> dict[str, Any]:
    """Data shaped like a run as GET /runs/{id} shows it, with the bench's id."""
    now = datetime.now(UTC).isoformat()
    return {
        "id": marker,
        "conversation_id": str(uuid.uuid4()),
        "status": "succeeded",
        "agent": "assistant",
        "usage": {"input_tokens": 120, "output_tokens": 30, "cached_input_tokens": 20},
        "error": None,
        "created_at": now,
        "started_at": now,
        "finished_at": now,
    }


class Outbox:
    """Writes events as producers do: ``record_event`` in a committed transaction, then the
    deliveries' jobs sent after the commit through the Celery job sender."""

    def __init__(self, sessionmaker: Any, sender: Any) -> None:
        self.sessionmaker = sessionmaker
        self.sender = sender

    async def write(self, hook: Hook, marker: str) -> float:
        """The commit's time (``time.time()``)."""
        from switchboard.webhooks.jobs import deliver_jobs
        from switchboard.webhooks.outbox import record_event
        from switchboard.webhooks.schemas import WebhookEventType

        async with self.sessionmaker() as session, session.begin():
            refs = await record_event(
                session, hook.tenant_id, WebhookEventType.run_completed, fake_run(marker)
            )
        committed = time.time()
        assert refs, "no delivery written"
        await self.sender.send(deliver_jobs(refs))
        return committed


# --- checks -----------------------------------------------------------------------------------


@dataclass
class Checked:
    failures: int = 0
    verified: int = 0

    def fail(self, text: str) -> None:
        self.failures += 1
        print(f"    FAILED: {text}")


def verify_signatures(
    arrivals: Sequence[Arrival], secrets: dict[str, str], checked: Checked
) -> None:
    """Every body's signature, with the ``standardwebhooks`` verifier and the secret the API
    gave for its endpoint."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    verifiers = {path: Webhook(secret) for path, secret in secrets.items()}
    bad = 0
    for arrival in arrivals:
        headers = {
            "webhook-id": arrival.webhook_id,
            "webhook-timestamp": arrival.webhook_timestamp,
            "webhook-signature": arrival.signature,
        }
        try:
            verifiers[arrival.path].verify(arrival.body, headers)
            checked.verified += 1
        except (WebhookVerificationError, KeyError):
            bad += 1
    if bad:
        checked.fail(f"{bad} of {len(arrivals)} signatures did not verify")


def delivery_states(database: str, markers: Sequence[str]) -> Counter[str]:
    """The deliveries of the events whose ``data.id`` is one of ``markers``: 'status/attempts'."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        rows = conn.execute(
            "SELECT d.status, d.attempts FROM webhook_delivery d"
            " JOIN webhook_event e ON e.id = d.event_id WHERE e.data->>'id' = ANY(%s)",
            (list(markers),),
        ).fetchall()
    return Counter(f"{status}/{attempts}" for status, attempts in rows)


async def settled_states(database: str, markers: Sequence[str]) -> Counter[str]:
    """The deliveries' states once none is still being recorded (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        states = await asyncio.to_thread(delivery_states, database, markers)
        unsettled = sum(n for key, n in states.items() if not key.startswith("succeeded/"))
        if not unsettled or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.2)


async def check_part(
    label: str,
    inbox: Inbox,
    markers: Sequence[str],
    secrets: dict[str, str],
    database: str,
    checked: Checked,
) -> None:
    """Each event once (a second after the last, for late duplicates), signed, succeeded."""
    await asyncio.sleep(1)
    copies = inbox.copies(markers)
    missing = [m for m, found in copies.items() if not found]
    twice = [m for m, found in copies.items() if len(found) > 1]
    ids = Counter(a.webhook_id for found in copies.values() for a in found)
    arrivals = [a for found in copies.values() for a in found]
    verify_signatures(arrivals, secrets, checked)
    states = await settled_states(database, markers)
    bad_states = {k: n for k, n in states.items() if not k.startswith("succeeded/")}
    print(
        f"  checks, {label}: {len(markers) - len(missing)} of {len(markers)} events arrived,"
        f" {len(twice)} more than once, {len(ids)} distinct webhook-ids;"
        f" {len(arrivals)} signatures checked; deliveries (status/attempts):"
        f" {', '.join(f'{n} {k}' for k, n in sorted(states.items()))}"
    )
    if missing:
        checked.fail(f"{label}: {len(missing)} events never arrived, e.g. {missing[:3]}")
    if twice:
        checked.fail(f"{label}: {len(twice)} events arrived more than once, e.g. {twice[:3]}")
    if len(ids) != len(markers) - len(missing):
        checked.fail(f"{label}: {len(ids)} webhook-ids for {len(markers)} events")
    if sum(states.values()) != len(markers) or bad_states:
        checked.fail(f"{label}: deliveries {dict(states)}")


# --- figures ----------------------------------------------------------------------------------


@dataclass
class Rate:
    label: str
    count: int
    seconds: float
    latencies: list[float]
    latency_label: str
    spend: Spend | None = None
    cpu_name: str = ""

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")

    def cpu_ms(self, name: str) -> float:
        if self.spend is None:
            return float("nan")
        if name == "postgres":  # the sender's own sessions: the worker's claims and records
            return self.spend.postgres.get("webhooks worker", 0.0) / self.count * 1000
        return self.spend.processes.get(name, 0.0) / self.count * 1000


def print_rates(rows: Sequence[Rate]) -> None:
    print(
        f"  {'':<50} {'per second':>10} {'p50':>9} {'p99':>9}"
        f"   CPU ms per delivery: sender / receiver / Postgres"
    )
    for row in rows:
        p50, p99 = p50_p99_ms(row.latencies)
        cpu = (
            f"{row.cpu_ms(row.cpu_name):6.2f} / {row.cpu_ms('receiver'):5.2f} /"
            f" {row.cpu_ms('postgres'):5.2f}"
        )
        print(
            f"  {row.label:<50} {row.per_second:10,.0f} {p50:6.1f} ms {p99:6.1f} ms   {cpu}"
            f"   ({row.latency_label})"
        )


def line(name: str, timings: Sequence[float]) -> tuple[float, float]:
    p50, p99 = p50_p99_ms(timings)
    worst = max(timings) * 1e3 if timings else float("nan")
    print(
        f"  {name:<58} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   max {worst:8.2f} ms"
        f"   ({len(timings)})"
    )
    return p50, p99


# --- baseline: the transport floor ------------------------------------------------------------


def signed_targets(hooks: Sequence[Hook], count: int) -> list[tuple[Hook, bytes, dict[str, str]]]:
    """``count`` bodies as the worker would send them (the envelope, signed with the
    endpoint's secret), round robin over the endpoints."""
    from switchboard.webhooks.signing import signed_headers

    targets = []
    for index in range(count):
        hook = hooks[index % len(hooks)]
        timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        document = {"type": EVENT, "timestamp": timestamp, "data": fake_run(f"base-{uuid.uuid4()}")}
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signed_headers(str(uuid.uuid4()), int(time.time()), body, [hook.secret])
        targets.append((hook, body, headers))
    return targets


async def floor(
    label: str,
    post: Callable[[Hook, bytes, dict[str, str]], Awaitable[bool]],
    targets: Sequence[tuple[Hook, bytes, dict[str, str]]],
    concurrency: int,
    inbox: Inbox,
    meter: Meter,
    checked: Checked,
) -> Rate:
    """``targets`` POSTed with ``concurrency`` in flight: from the first send to the last 2xx at
    the receiver; each request's send to its answer."""
    pending = iter(targets)
    latencies: list[float] = []
    failed = 0

    async def loop() -> None:
        nonlocal failed
        for hook, body, headers in pending:
            began = time.perf_counter()
            if not await post(hook, body, headers):
                failed += 1
            latencies.append(time.perf_counter() - began)

    markers = [str(json.loads(body)["data"]["id"]) for _, body, _ in targets]
    meter.start()
    started = time.time()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    missing = await inbox.all_of(markers, 30)
    spend = meter.stop()
    last = max((a.answered for a in inbox.first(markers)), default=time.time())
    if failed or missing:
        checked.fail(f"{label}: {failed} requests failed, {len(missing)} missing at the receiver")
    return Rate(label, len(targets), last - started, latencies, "request to answer", spend, "bench")


async def baselines(
    hooks: Sequence[Hook],
    count: int,
    concurrency: int,
    inbox: Inbox,
    meter: Meter,
    checked: Checked,
) -> list[Rate]:
    from switchboard.settings import load_settings
    from switchboard.webhooks.transport import WebhookTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def plain(hook: Hook, body: bytes, headers: dict[str, str]) -> bool:
            answer = await client.post(hook.url, content=body, headers=headers)
            return answer.status_code == 200

        await floor("warm-up", plain, signed_targets(hooks, len(hooks)), 4, inbox, meter, checked)
        raw = await floor(
            f"plain httpx.AsyncClient, {concurrency} in flight",
            plain,
            signed_targets(hooks, count),
            concurrency,
            inbox,
            meter,
            checked,
        )

    settings = load_settings().webhooks
    transport = WebhookTransport(settings, allow_private=True)
    try:

        async def ours(hook: Hook, body: bytes, headers: dict[str, str]) -> bool:
            outcome = await transport.post(str(hook.endpoint_id), hook.url, body, headers)
            return outcome.ok

        await floor("warm-up", ours, signed_targets(hooks, len(hooks)), 4, inbox, meter, checked)
        transport_rate = await floor(
            f"WebhookTransport.post, {concurrency} in flight",
            ours,
            signed_targets(hooks, count),
            concurrency,
            inbox,
            meter,
            checked,
        )
    finally:
        await transport.aclose()
    return [raw, transport_rate]


# --- 1. a burst through the outbox ------------------------------------------------------------


async def burst(
    label: str,
    outbox: Outbox,
    hooks: Sequence[Hook],
    count: int,
    writers: int,
    inbox: Inbox,
    meter: Meter,
    deadline: float,
    checked: Checked,
) -> tuple[Rate, list[str], float]:
    """``count`` events round robin over ``hooks``, ``writers`` transactions at once; the
    rate from the first commit to the last 2xx, each delivery's commit to its 2xx. Also the
    markers and the seconds the writes took."""
    markers = [f"burst-{uuid.uuid4()}" for _ in range(count)]
    committed: dict[str, float] = {}
    pending = iter(enumerate(markers))

    async def writer() -> None:
        for index, marker in pending:
            committed[marker] = await outbox.write(hooks[index % len(hooks)], marker)

    meter.start()
    began = time.time()
    await asyncio.gather(*(writer() for _ in range(writers)))
    written = time.time() - began
    missing = await inbox.all_of(markers, deadline)
    spend = meter.stop()
    if missing:
        checked.fail(f"{label}: {len(missing)} of {count} events missing after {deadline:.0f} s")
    arrivals = inbox.first(markers)
    first_commit = min(committed.values())
    last = max((a.answered for a in arrivals), default=time.time())
    latencies = [a.answered - committed[a.marker] for a in arrivals]
    rate = Rate(
        label, len(arrivals), last - first_commit, latencies, "commit to 2xx", spend, "worker"
    )
    return rate, markers, written


# --- 2. runs through the API ------------------------------------------------------------------


@dataclass
class RunDelivery:
    run_id: str
    posted: float
    arrival: Arrival | None = None
    finished_at: float | None = None
    status: str | None = None
    problem: str | None = None

    @property
    def from_final_write(self) -> float:
        assert self.arrival is not None
        return self.arrival.answered - self.arrival.event_time


async def chats(
    api: str, hook: Hook, count: int, concurrency: int, inbox: Inbox, meter: Meter
) -> tuple[list[RunDelivery], Spend]:
    """``count`` chats, ``concurrency`` loops each waiting for its run's webhook; 5 more first,
    to warm up, not counted."""
    results: list[RunDelivery] = []
    remaining = count
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:

        async def one() -> RunDelivery:
            posted = time.time()
            accepted = await client.post(
                "/api/v1/chat", json={"message": CHAT_MESSAGE}, headers=hook.headers
            )
            if accepted.status_code != 202:
                return RunDelivery("", posted, problem=f"chat answered {accepted.status_code}")
            run = RunDelivery(str(accepted.json()["run_id"]), posted)
            run.arrival = await inbox.arrival_of(run.run_id, 60)
            if run.arrival is None:
                run.problem = "no webhook within 60 s"
                return run
            data = json.loads(run.arrival.body)["data"]
            run.status = data.get("status")
            run.finished_at = datetime.fromisoformat(data["finished_at"]).timestamp()
            if run.status != "succeeded":
                run.problem = f"run {run.status}"
            return run

        for _ in range(5):
            await one()

        async def loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                results.append(await one())

        meter.start()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        spend = meter.stop()
    return results, spend


def report_runs(label: str, runs: Sequence[RunDelivery], checked: Checked) -> list[float]:
    ok = [r for r in runs if r.problem is None and r.arrival is not None]
    for problem, n in Counter(r.problem for r in runs if r.problem).most_common(5):
        checked.fail(f"{label}: {n} x {problem}")
    final = [r.from_final_write for r in ok]
    line(f"{label}: final write (body timestamp) to 2xx", final)
    line(
        "  the same from the run's finished_at",
        [r.arrival.answered - r.finished_at for r in ok if r.arrival and r.finished_at],
    )
    line(
        "  finished_at to the body timestamp",
        [r.arrival.event_time - r.finished_at for r in ok if r.arrival and r.finished_at],
    )
    line("  chat's POST to 2xx", [r.arrival.answered - r.posted for r in ok if r.arrival])
    return final


# --- 3. one slow tenant -----------------------------------------------------------------------


@dataclass
class SlowStream:
    """Events at a steady rate to endpoints that never answer, through the outbox."""

    outbox: Outbox
    hooks: Sequence[Hook]
    rate: float
    markers: list[str] = field(default_factory=list)
    written_late: int = 0
    slots_peak: int = 0
    slot_samples: int = 0
    timeline: list[tuple[float, dict[str, float], Counter[str]]] = field(default_factory=list)

    async def write(self, stop: asyncio.Event) -> None:
        began = time.perf_counter()
        index = 0
        while not stop.is_set():
            due = began + index / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            elif delay < -1 / self.rate:
                self.written_late += 1
            marker = f"slow-{uuid.uuid4()}"
            await self.outbox.write(self.hooks[index % len(self.hooks)], marker)
            self.markers.append(marker)
            index += 1

    async def sample_slots(self, stop: asyncio.Event) -> None:
        """The slow endpoints' slots in Redis (members not lapsed), every 50 ms."""
        from redis.asyncio import Redis

        client = Redis.from_url(shared.REDIS_URL)
        try:
            while not stop.is_set():
                now_ms = int(time.time() * 1000)
                for hook in self.hooks:
                    held = await client.zcount(SLOT_KEY.format(hook.endpoint_id), now_ms, "+inf")
                    self.slots_peak = max(self.slots_peak, int(held))
                self.slot_samples += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
        finally:
            await client.aclose()

    async def sample_timeline(
        self, stop: asyncio.Event, metrics_url: str, database: str, every: float = 5.0
    ) -> None:
        """The worker's /metrics and the slow endpoints' deliveries by status, every ``every``
        seconds: how the slow tenant's backlog and the worker's put-backs grow."""
        began = time.perf_counter()
        ids = [h.endpoint_id for h in self.hooks]
        while not stop.is_set():
            values = await asyncio.to_thread(scrape, metrics_url)
            _, deliveries = await asyncio.to_thread(slow_attempts, database, ids)
            self.timeline.append((time.perf_counter() - began, values, deliveries))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def print_timeline(self) -> None:
        print(
            "  timeline (s since the slow stream began: the worker's webhooks.deliver tasks/s and"
            " busy put-backs/s since the sample before; the slow deliveries by status)"
        )
        for (t0, v0, _), (t1, v1, states) in zip(self.timeline, self.timeline[1:], strict=False):
            tasks = metric(v1, "celery_tasks_total", task="webhooks.deliver", state="started")
            tasks -= metric(v0, "celery_tasks_total", task="webhooks.deliver", state="started")
            busy = metric(v1, "webhooks_endpoint_busy_total")
            busy -= metric(v0, "webhooks_endpoint_busy_total")
            shown = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
            print(
                f"    {t1:6.1f} s: {tasks / (t1 - t0):6.1f} tasks/s, {busy / (t1 - t0):6.1f}"
                f" busy/s; {shown}"
            )


def slow_attempts(
    database: str, endpoint_ids: Sequence[uuid.UUID]
) -> tuple[Counter[str], Counter[str]]:
    """The slow endpoints' attempts by status/error, and their deliveries by status."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        attempts = conn.execute(
            "SELECT status, coalesce(error, ''), count(*) FROM webhook_attempt"
            " WHERE endpoint_id = ANY(%s) GROUP BY 1, 2",
            (list(endpoint_ids),),
        ).fetchall()
        deliveries = conn.execute(
            "SELECT status, count(*) FROM webhook_delivery WHERE endpoint_id = ANY(%s) GROUP BY 1",
            (list(endpoint_ids),),
        ).fetchall()
    return (
        Counter({f"{status} {error}".strip(): int(n) for status, error, n in attempts}),
        Counter({str(status): int(n) for status, n in deliveries}),
    )


async def dispatching(outbox: Outbox, seconds: float, stop: asyncio.Event) -> None:
    """Beat's ``webhooks-dispatch`` entry: ``webhooks.dispatch`` every ``seconds``."""
    from switchboard.kit.jobs import Job
    from switchboard.webhooks.jobs import DISPATCH

    while not stop.is_set():
        await outbox.sender.send([Job(DISPATCH, queue="webhooks")])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


# --- the run ----------------------------------------------------------------------------------


class RedisIndex:
    """The bench's Redis index (``shared.REDIS_URL``), and who else is connected to it."""

    def __init__(self) -> None:
        self.url = shared.REDIS_URL
        self.port = int(urlsplit(self.url).port or 6379)
        self._seen: set[str] = set()

    def others(self, pids: Sequence[int]) -> list[str]:
        """Clients on the index whose sockets belong to none of ``pids``."""
        client = redis.Redis.from_url(self.url)
        try:
            me = client.client_id()
            index = int(client.connection_pool.connection_kwargs.get("db", 0))
            entries = [
                c for c in client.client_list() if int(c["db"]) == index and int(c["id"]) != me
            ]
        finally:
            client.close()
        ours: set[int] = set()
        for pid in pids:
            with contextlib.suppress(OSError):
                ours |= local_ports_to(pid, self.port)
        return [
            f"{c['addr']} ({c.get('name') or c.get('cmd')})"
            for c in entries
            if int(str(c["addr"]).rsplit(":", 1)[1]) not in ours
        ]

    def intruders(self, pids: Sequence[int]) -> list[str]:
        """Other clients seen twice in a row (a client of ours can close between the list
        and the look-up of our sockets, once)."""
        now = set(self.others(pids))
        stayed, self._seen = now & self._seen, now
        return sorted(stayed)


async def guarded(work: Awaitable[int], index: RedisIndex, services: Sequence[Service]) -> int:
    """``work``, watched: stopped at once if a process exits or another client connects to the
    bench's Redis index (a test run or bench sharing it would take and flush our jobs, and
    we theirs)."""

    async def guard() -> None:
        while True:
            await asyncio.sleep(2)
            pids = [os.getpid(), *(s.pid for s in services)]
            others = await asyncio.to_thread(index.intruders, pids)
            if others:
                raise RuntimeError(
                    f"{len(others)} other clients connected to Redis {index.url} during the run"
                    f" ({', '.join(others[:5])}): figures not valid"
                )

    guard_task = asyncio.create_task(guard())
    task = asyncio.ensure_future(watched(work, services))
    try:
        await asyncio.wait({guard_task, task}, return_when=asyncio.FIRST_COMPLETED)
        if guard_task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            guard_task.result()  # raises
        return task.result()
    finally:
        guard_task.cancel()


def refuse_a_shared_index(index: RedisIndex) -> None:
    """Exits if another client is connected to the bench's Redis index: the bench flushes it
    before and after, which would wipe another run's queues (and theirs, ours)."""
    others = index.others([os.getpid()])
    if others:
        sys.exit(
            f"{index.url} has {len(others)} other clients (another bench or test run?):"
            " choose a free index with BENCH_REDIS_DB, or --own-redis"
        )


def tear_down(
    services: Sequence[Service],
    index: RedisIndex,
    *,
    database: str,
    work: Path,
    failed: bool,
    kept: bool,
) -> None:
    """``bench.services.tear_down``, but the Redis index is flushed only if nobody else is on
    it (should someone have connected during the run, their data stays)."""
    for service in reversed(services):
        service.stop()
    if failed:
        for service in services:
            print(f"  warnings and errors in {service.log_path}:\n{service.complaints()}")
    others = index.others([os.getpid()])
    if others:
        print(f"{index.url} not flushed: {len(others)} other clients on it", file=sys.stderr)
    else:
        redis.Redis.from_url(index.url).flushdb()
    drop_database(database)
    if failed or kept:
        print(f"logs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def own_redis(enabled: bool) -> Iterator[None]:
    """With ``enabled``, a redis-server of the bench's own on a free port, for the run:
    ``bench.services.REDIS_URL`` points at it (the same index number)."""
    if not enabled:
        yield
        return
    port = free_port()
    folder = tempfile.mkdtemp(prefix="switchboard-bench-redis-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        shared.REDIS_URL = f"redis://127.0.0.1:{port}/{shared.BENCH_REDIS_DB}"
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Context:
    args: argparse.Namespace
    database: str
    api: str
    receiver: str
    inbox: Inbox
    meter: Meter
    metrics_url: str
    endpoint_concurrency: int
    timeout_seconds: float
    dispatch_seconds: float


async def measure(ctx: Context) -> int:
    # Imported once the workspace's environment is in place: they read the settings.
    from switchboard.kit.db import create_engine, create_sessionmaker
    from switchboard.settings import load_settings
    from workers.celery_app import job_sender  # the API's sender

    engine = create_engine(load_settings().database, application_name="bench-outbox")
    outbox = Outbox(create_sessionmaker(engine), job_sender)
    checked = Checked()
    stop_dispatch = asyncio.Event()
    dispatcher = asyncio.create_task(dispatching(outbox, ctx.dispatch_seconds, stop_dispatch))
    try:
        return await parts(ctx, outbox, checked)
    finally:
        stop_dispatch.set()
        await dispatcher
        await engine.dispose()


@dataclass
class Setup:
    hooks: list[Hook]
    """The bursts' endpoints, one per tenant."""
    runner: Hook
    """The tenant whose runs' ends are delivered."""
    slow: list[Hook]
    secrets: dict[str, str]
    """The healthy endpoints' secrets, by path."""


async def parts(ctx: Context, outbox: Outbox, checked: Checked) -> int:
    args = ctx.args
    hooks = [await new_hook(ctx.api, ctx.receiver, f"/t/{i}") for i in range(args.tenants)]
    runner = await new_hook(ctx.api, ctx.receiver, "/runs")
    put_on_plan(ctx.database, runner.headers, "bench-unlimited")
    slow = [await new_hook(ctx.api, ctx.receiver, f"/hang/{i}") for i in range(args.slow_tenants)]
    setup = Setup(hooks, runner, slow, {h.path: h.secret for h in [*hooks, runner]})
    print(
        f"{len(hooks)} tenants x 1 endpoint for the bursts, 1 for the runs, {len(slow)} slow;"
        f" one webhooks worker process, threads pool, concurrency {args.worker_threads};"
        f" WEBHOOKS_ENDPOINT_CONCURRENCY {ctx.endpoint_concurrency},"
        f" WEBHOOKS_TIMEOUT_SECONDS {ctx.timeout_seconds:g}; load {load()}"
    )
    # Warm-up: one event per endpoint through the worker, not counted.
    warm = [f"warm-{uuid.uuid4()}" for _ in hooks]
    for hook, marker in zip(hooks, warm, strict=True):
        await outbox.write(hook, marker)
    if await ctx.inbox.all_of(warm, 60):
        raise RuntimeError("the warm-up events did not arrive")

    print(f"\nBaseline: the transport floor, {args.events} POSTs from this process (load {load()})")
    floors = await baselines(hooks, args.events, args.worker_threads, ctx.inbox, ctx.meter, checked)
    print_rates(floors)
    for rate in floors:
        assert rate.spend is not None
        print(f"    {rate.label}: {rate.spend.line()}")

    print(
        f"\n1. Burst: {args.events} events through the outbox to {len(hooks)} endpoints,"
        f" {args.writers} writers (load {load()})"
    )
    first = await burst_part(ctx, outbox, setup, "outbox -> webhooks worker -> 2xx", checked)
    print_rates([*floors, first])
    print_added(floors[1], first)

    print(
        f"\n2. Runs: {args.runs} chats through the API, {args.chat_concurrency} at a time,"
        f" each waiting for its webhook, after 5 to warm up (load {load()})"
    )
    alone = await runs_part(ctx, setup, "runs", checked)

    print(
        f"\n3. One slow tenant: {len(slow)} endpoint(s) that never answer,"
        f" {args.slow_rate:g} events/s through the outbox from {args.slow_warmup:g} s before"
        f" (load {load()})"
    )
    stream = SlowStream(outbox, slow, args.slow_rate)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(stream.write(stop)),
        asyncio.create_task(stream.sample_slots(stop)),
        asyncio.create_task(stream.sample_timeline(stop, ctx.metrics_url, ctx.database)),
    ]
    before = await asyncio.to_thread(scrape, ctx.metrics_url)
    try:
        await asyncio.sleep(args.slow_warmup)
        print(f"  after the warm-up: {len(stream.markers)} slow events written (load {load()})")
        beside = await runs_part(ctx, setup, "runs, one endpoint hanging", checked)
        print(f"  the burst again, the slow endpoint still hanging (load {load()})")
        second = await burst_part(ctx, outbox, setup, "the same, one endpoint hanging", checked)
        after = await asyncio.to_thread(scrape, ctx.metrics_url)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    print_rates([first, second])
    held = await report_slow(ctx, stream, churn(before, after), checked)
    stream.print_timeline()

    # Each event once over the whole run (a late duplicate of an earlier part included).
    counts = Counter(a.webhook_id for a in ctx.inbox.all() if a.path in setup.secrets)
    twice = sum(1 for n in counts.values() if n > 1)
    if twice:
        checked.fail(f"{twice} webhook-ids arrived more than once over the whole run")

    print(f"\nSummary ({os.cpu_count()} cores, load {load()} at the end)")
    p50_alone, p99_alone = p50_p99_ms(alone)
    p50_beside, p99_beside = p50_p99_ms(beside)
    print(
        f"  deliveries/s: floor plain httpx {floors[0].per_second:,.0f}, WebhookTransport"
        f" {floors[1].per_second:,.0f}; worker burst {first.per_second:,.0f}, with a hanging"
        f" endpoint {second.per_second:,.0f} ({second.per_second / first.per_second:.2f}x)"
    )
    print(
        f"  run's final write to 2xx: p50 {p50_alone:.2f} ms, p99 {p99_alone:.2f} ms alone;"
        f" p50 {p50_beside:.2f} ms, p99 {p99_beside:.2f} ms beside the hanging endpoint"
        f" ({p50_beside / p50_alone:.2f}x, {p99_beside / p99_alone:.2f}x)"
    )
    print(
        f"  slow endpoint: at most {held} attempts in flight (receiver), {stream.slots_peak}"
        f" slots (Redis), limit {ctx.endpoint_concurrency}"
    )
    print(
        f"  checks: {checked.verified} signatures verified, {len(counts)} webhook-ids,"
        f" {checked.failures} failures"
    )
    return checked.failures


async def burst_part(
    ctx: Context, outbox: Outbox, setup: Setup, label: str, checked: Checked
) -> Rate:
    args = ctx.args
    before = await asyncio.to_thread(scrape, ctx.metrics_url)
    rate, markers, written = await burst(
        label,
        outbox,
        setup.hooks,
        args.events,
        args.writers,
        ctx.inbox,
        ctx.meter,
        args.deadline,
        checked,
    )
    after = await asyncio.to_thread(scrape, ctx.metrics_url)
    arrivals = ctx.inbox.first(markers)
    line("  event timestamp to 2xx", [a.answered - a.event_time for a in arrivals])
    print(
        f"  writes: {args.events} committed in {written:.2f} s ({args.events / written:,.0f}/s,"
        f" each event's job sent after its commit); {churn(before, after)}"
    )
    assert rate.spend is not None
    print(f"  {rate.spend.line()}")
    await check_part(label, ctx.inbox, markers, setup.secrets, ctx.database, checked)
    return rate


async def runs_part(ctx: Context, setup: Setup, label: str, checked: Checked) -> list[float]:
    """The runs' final write to 2xx, in seconds."""
    args = ctx.args
    before = await asyncio.to_thread(scrape, ctx.metrics_url)
    runs, spend = await chats(
        ctx.api, setup.runner, args.runs, args.chat_concurrency, ctx.inbox, ctx.meter
    )
    after = await asyncio.to_thread(scrape, ctx.metrics_url)
    final = report_runs(label, runs, checked)
    print(f"  {len(runs) / spend.wall:.1f} runs/s; {churn(before, after)}")
    print(f"  {spend.line()}")
    run_ids = [r.run_id for r in runs if r.run_id]
    await check_part(label, ctx.inbox, run_ids, setup.secrets, ctx.database, checked)
    return final


async def report_slow(ctx: Context, stream: SlowStream, churned: str, checked: Checked) -> int:
    """What the slow endpoints went through; the most attempts one had in flight."""
    paths = {h.path for h in stream.hooks}
    hangs = [h for h in ctx.inbox.hangs if h["p"] in paths]
    held = max((h["open"] for h in hangs), default=0)
    attempts, deliveries = await asyncio.to_thread(
        slow_attempts, ctx.database, [h.endpoint_id for h in stream.hooks]
    )
    print(
        f"  slow endpoint(s): {len(stream.markers)} events written ({stream.written_late} late),"
        f" {len(hangs)} requests received; attempts in flight at most {held} at the receiver,"
        f" {stream.slots_peak} slots in Redis ({stream.slot_samples} samples every 50 ms); limit"
        f" WEBHOOKS_ENDPOINT_CONCURRENCY {ctx.endpoint_concurrency} per endpoint"
    )
    print(f"  during part 3: {churned}")
    print(f"  its attempts: {', '.join(f'{n} {k}' for k, n in sorted(attempts.items())) or 'none'}")
    print(f"  its deliveries: {', '.join(f'{n} {k}' for k, n in sorted(deliveries.items()))}")
    if held > ctx.endpoint_concurrency or stream.slots_peak > ctx.endpoint_concurrency:
        checked.fail(f"a slow endpoint had {max(held, stream.slots_peak)} attempts in flight")
    return held


def churn(before: dict[str, float], after: dict[str, float]) -> str:
    """The worker's busy put-backs and tasks between two scrapes of its /metrics."""

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    tasks = delta("celery_tasks_total", task="webhooks.deliver", state="started")
    results = ", ".join(
        f"{delta('webhooks_attempts_total', result=result):.0f} {result}"
        for result in ("succeeded", "timeout", "connection_failed", "http_status")
        if delta("webhooks_attempts_total", result=result)
    )
    timed = delta("webhooks_attempt_seconds_count")
    mean = delta("webhooks_attempt_seconds_sum") / timed * 1000 if timed else float("nan")
    slow = timed - delta("webhooks_attempt_seconds_bucket", le="1.0")
    return (
        f"webhooks.deliver tasks run {tasks:.0f}, busy put-backs"
        f" {delta('webhooks_endpoint_busy_total'):.0f}, attempts: {results or 'none'};"
        f" an attempt took {mean:.0f} ms on average in the worker, {slow:.0f} over 1 s"
    )


def print_added(transport: Rate, worker: Rate) -> None:
    """What the queue hop, Postgres and Redis add per delivery over the transport alone."""
    assert worker.spend is not None
    added = 1000 / worker.per_second - 1000 / transport.per_second
    cpu = worker.cpu_ms("worker") - transport.cpu_ms("bench")
    pg = worker.cpu_ms("postgres")
    print(
        f"  added per delivery over WebhookTransport alone: {added:.2f} ms of wall time at this"
        f" concurrency; {cpu:.2f} ms of the sending process's CPU, and {pg:.2f} ms of Postgres"
        f" CPU in the worker's sessions (claim and record)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="events in each burst")
    parser.add_argument("--tenants", type=int, default=20, help="tenants of the bursts")
    parser.add_argument("--writers", type=int, default=8, help="outbox transactions at once")
    parser.add_argument("--runs", type=int, default=200, help="chats in (2) and in (3)")
    parser.add_argument("--chat-concurrency", type=int, default=2)
    parser.add_argument("--worker-threads", type=int, default=50, help="the webhooks worker's")
    parser.add_argument("--timeout-seconds", type=float, help="WEBHOOKS_TIMEOUT_SECONDS (15)")
    parser.add_argument("--slow-tenants", type=int, default=1)
    parser.add_argument("--slow-rate", type=float, default=5, help="slow events per second")
    parser.add_argument("--slow-warmup", type=float, help="seconds before (3) measures (30)")
    parser.add_argument("--deadline", type=float, default=300, help="seconds, per burst")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (about 2 min)")
    parser.add_argument(
        "--own-redis",
        action="store_true",
        help="a redis-server of the bench's own instead of BENCH_REDIS_DB on 127.0.0.1:6379",
    )
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        uvloop.run(_serve(args.serve_receiver))
        return
    if args.quick:
        args.events, args.runs = min(args.events, 300), min(args.runs, 30)
        args.timeout_seconds = args.timeout_seconds or 3
        args.slow_warmup = 8 if args.slow_warmup is None else args.slow_warmup
    args.timeout_seconds = args.timeout_seconds or 15
    args.slow_warmup = 30 if args.slow_warmup is None else args.slow_warmup

    with own_redis(args.own_redis):
        failures = run(args)
    sys.exit(1 if failures else 0)


def run(args: argparse.Namespace) -> int:
    index = RedisIndex()
    refuse_a_shared_index(index)
    print(
        f"bench/webhook_out_bench.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" {os.cpu_count()} cores, load {load()}, Redis {index.url}"
    )
    metrics_port = free_port()
    database, work, env = workspace(
        "webhook_out",
        IDENTITY_LOGIN_IP_MAX_ATTEMPTS="100000000",
        IDENTITY_REGISTER_IP_PER_HOUR="100000",
        IDENTITY_REGISTER_GLOBAL_PER_MINUTE="100000",
        OFFLINE_MODEL_TOKEN_DELAY_MS="0",
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOKS_TIMEOUT_SECONDS=f"{args.timeout_seconds:g}",
    )
    from switchboard.settings import load_settings

    hooks_settings = load_settings().webhooks
    services: list[Service] = []
    failures = 0
    redis.Redis.from_url(index.url).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")
        api, base = start_api(env, work, "api")
        services.append(api)
        runs = start_worker(
            env, work, "runs", pool="threads", concurrency=RUNS_THREADS, queues="runs"
        )
        services.append(runs)
        webhooks = start_worker(
            {**env, "CELERY_METRICS_PORT": str(metrics_port)},
            work,
            "webhooks",
            pool="threads",
            concurrency=args.worker_threads,
            queues="webhooks",
        )
        services.append(webhooks)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until_it_answers(webhooks, metrics_url)
        # Last in the list: stopped first, so the worker's hanging attempts end at once.
        inbox, receiver_base = start_receiver(work, services)
        receiver = services[-1]
        owners = {"webhooks worker": webhooks.pid, "runs worker": runs.pid, "API": api.pid}
        owners["bench"] = os.getpid()
        named = {"worker": webhooks, "runs worker": runs, "API": api, "receiver": receiver}
        meter = Meter(named, PostgresCpu(database, owners), inbox)
        ctx = Context(
            args=args,
            database=database,
            api=base,
            receiver=receiver_base,
            inbox=inbox,
            meter=meter,
            metrics_url=metrics_url,
            endpoint_concurrency=hooks_settings.endpoint_concurrency,
            timeout_seconds=hooks_settings.timeout_seconds,
            dispatch_seconds=hooks_settings.dispatch_seconds,
        )
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        failures = asyncio.run(guarded(measure(ctx), index, services))
    except BaseException:
        kept = True
        raise
    finally:
        tear_down(services, index, database=database, work=work, failed=bool(failures), kept=kept)
    return failures


if __name__ == "__main__":
    main()
