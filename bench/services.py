"""What the system benchmarks share: a database and Redis index of their own, the API and
worker processes they start (and, for those that need them, redis-servers of their own and an
OTLP/HTTP sink), and /proc readings of those processes.

    python -m bench.services otlp-sink --port N    # the sink, as a process of its own
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
BENCH_REDIS_DB = os.environ.get("BENCH_REDIS_DB", "13")
REDIS_URL = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"
ADMIN_CONNINFO = "host=127.0.0.1 user=postgres dbname=postgres"


def bench_env(database: str, key_dir: str, **extra: str) -> dict[str, str]:
    """The test suite's settings (tests/conftest.py), on the bench's own database and Redis."""
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "AUTH_KEY_DIR": key_dir,
        "AUTH_ISSUER": "https://switchboard.bench",
        "AUTH_AUDIENCE": "switchboard-bench",
        "IDENTITY_BCRYPT_COST": "4",
        "OPENAI_API_KEY": "",  # the offline model, whatever the calling shell has
        **extra,
    }


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line[:300] for line in text[-lines:])

    def complaints(self, top: int = 8) -> str:
        """Warnings and errors of its log (JSON or console lines), counted by event, most
        frequent first."""
        counts: dict[str, int] = {}
        for raw in self.log_path.read_text(errors="replace").splitlines():
            key = _complaint(raw)
            if key is not None:
                counts[key[:200]] = counts.get(key[:200], 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return "\n".join(f"    {count:6d} x {key}" for key, count in ranked) or "    (none)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.tail(30)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# structlog's console renderer: "<timestamp> [warning  ] <event>   [<logger>] key=value ..."
_CONSOLE_LINE = re.compile(r"\[(warning|error|critical)\s*\]\s+(.*?)\s*(?:\[[\w.]+\]|$)")


def _complaint(raw: str) -> str | None:
    """``level event detail`` of a warning or error line, ids masked; None for other lines."""
    level = event = detail = ""
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    if isinstance(entry, dict):
        if entry.get("level") not in ("warning", "error", "critical"):
            return None
        level, event = str(entry["level"]), str(entry.get("event", ""))
        detail = str(entry.get("error") or entry.get("exc") or "")
    else:
        found = _CONSOLE_LINE.search(_ANSI.sub("", raw))
        if found is None:
            return None
        level, event = found.group(1), found.group(2)
    return f"{level} {re.sub(r'[0-9a-f-]{36}', '<id>', event)} {detail}".rstrip()


def start(name: str, args: Sequence[str], env: dict[str, str], logs: Path) -> Service:
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Service(name, process, log_path)


def start_api(env: dict[str, str], logs: Path, name: str = "api") -> tuple[Service, str]:
    """``python -m api`` on a free port, once it answers; its address."""
    port = free_port()
    api = start(name, ["-m", "api"], {**env, "API_PORT": str(port)}, logs)
    base = f"http://127.0.0.1:{port}"
    wait_until_it_answers(api, f"{base}/health/live")
    return api, base


def wait_until_it_answers(service: Service, url: str, seconds: float = 90) -> None:
    """Until a GET of ``url`` gets an answer (any status); raises with the service's log if it
    exits or does not answer in time."""
    deadline = time.monotonic() + seconds
    while True:
        service.check_alive()
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not answer:\n{service.tail()}") from None
            time.sleep(0.1)


def start_worker(
    env: dict[str, str],
    logs: Path,
    name: str,
    *,
    pool: str,
    concurrency: int,
    queues: str,
    loglevel: str | None = None,
    gossip_and_mingle: bool = False,
) -> Service:
    """A Celery worker. ``loglevel`` and ``gossip_and_mingle`` make its command line the
    Procfile's (``make dev``); by default it has neither, as the benchmarks always had."""
    return start(
        name,
        [
            "-m",
            "celery",
            "--app=workers.celery_app:celery_app",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            *([f"--loglevel={loglevel}"] if loglevel else []),
            *([] if gossip_and_mingle else ["--without-gossip", "--without-mingle"]),
            f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
        ],
        env,
        logs,
    )


def start_redis(logs: Path, name: str = "redis") -> tuple[Service, str]:
    """A redis-server of the bench's own on a free port (no persistence, as the development
    server runs), once it answers; its URL without a database index."""
    port = free_port()
    folder = logs / name
    folder.mkdir(exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(name, process, log_path)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            service.check_alive()
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer:\n{service.tail()}") from None
                time.sleep(0.05)
    finally:
        client.close()
    return service, f"redis://127.0.0.1:{port}"


# --- an OTLP/HTTP sink ------------------------------------------------------------------------


class _SinkHandler(BaseHTTPRequestHandler):
    """Answers 200 to every export (an empty body is an empty, successful
    ExportTraceServiceResponse) and counts it; ``GET /stats`` tells the counts."""

    server: _Sink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.count(self.path, len(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps(self.server.stats()).encode()
        self.send_response(200 if self.path == "/stats" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per export would be the sink's main cost


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _SinkHandler)
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._bytes = 0

    def count(self, path: str, size: int) -> None:
        with self._lock:
            self._requests[path] = self._requests.get(path, 0) + 1
            self._bytes += size

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "requests": sum(self._requests.values()),
                "bytes": self._bytes,
                "paths": dict(self._requests),
            }


def start_otlp_sink(logs: Path) -> tuple[Service, str]:
    """``python -m bench.services otlp-sink`` on a free port, once it answers; its URL, the
    value of ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters add ``/v1/traces``)."""
    port = free_port()
    service = start("otlp-sink", ["-m", "bench.services", "otlp-sink", f"--port={port}"], {}, logs)
    url = f"http://127.0.0.1:{port}"
    wait_until_it_answers(service, f"{url}/stats")
    return service, url


def otlp_sink_stats(url: str) -> dict[str, object]:
    """What the sink at ``url`` received: ``requests``, ``bytes`` and requests by path."""
    stats: dict[str, object] = httpx.get(f"{url}/stats", timeout=5).json()
    return stats


def put_on_plan(database: str, headers: dict[str, str], code: str, **limits: int | None) -> None:
    """A plan with these limits (absent: unlimited) and the signed-in user's tenant on it."""
    # The tenant id, from the access token's claims (no need to verify our own token here).
    token = headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    tenant = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tid"]
    columns = ("runs_per_minute", "concurrent_runs", "monthly_tokens", "open_streams_per_user")
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as conn:
        conn.execute(
            "INSERT INTO plan (code, name, seat_price_cents, included_tokens, active,"
            " runs_per_minute, concurrent_runs, monthly_tokens, open_streams_per_user)"
            " VALUES (%s, %s, 0, 0, true, %s, %s, %s, %s) ON CONFLICT (code) DO NOTHING",
            (code, code, *(limits.get(column) for column in columns)),
        )
        conn.execute(
            "INSERT INTO subscription (id, tenant_id, plan_code, seats, status, sync_version,"
            " synced_version, cancel_at_period_end)"
            " VALUES (%s, %s, %s, 1, 'active', 1, 1, false)",
            (uuid.uuid4(), tenant, code),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_database(name: str) -> None:
    drop_database(name)
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(drop)


def run_module(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    found += [int(child), *descendants(int(child))]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def p50_p99_ms(timings: Sequence[float]) -> tuple[float, float]:
    if len(timings) < 2:
        only = timings[0] * 1e3 if timings else float("nan")
        return only, only
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return statistics.median(timings) * 1e3, cuts[98] * 1e3


def workspace(name: str, **extra: str) -> tuple[str, Path, dict[str, str]]:
    """A bench run's database name, work directory (with its key directory) and environment,
    which this process takes too (its settings, and every child it starts, read it). SIGTERM
    exits through the caller's ``finally``, so nothing is left behind."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    database = f"switchboard_bench_{name}_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{name}-"))
    (work / "keys").mkdir()
    env = bench_env(database, str(work / "keys"), **extra)
    os.environ.update(env)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return database, work, env


def tear_down(
    services: Sequence[Service], *, database: str, work: Path, failed: bool, kept: bool
) -> None:
    """Stops the services, drops the bench's Redis data and database; keeps the logs of a run
    that failed or was interrupted."""
    for service in reversed(services):
        service.stop()
    if failed:
        for service in services:
            print(f"  warnings and errors in {service.log_path}:\n{service.complaints()}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    drop_database(database)
    if failed or kept:
        print(f"logs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.services")
    parser.add_argument("command", choices=("otlp-sink",))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sink = _Sink(args.port)
    try:
        sink.serve_forever()
    finally:
        print(f"served {json.dumps(sink.stats())}", flush=True)


if __name__ == "__main__":
    main()
