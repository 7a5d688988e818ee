"""What the system benchmarks share: a database and Redis index of their own, the API and
worker processes they start, and /proc readings of those processes."""

from __future__ import annotations

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
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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
        """Warnings and errors of its JSON log, counted by event, most frequent first."""
        counts: dict[str, int] = {}
        for raw in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and entry.get("level") in ("warning", "error"):
                    event = str(entry.get("event", ""))
                    detail = entry.get("error") or entry.get("exc") or ""
                    key = f"{entry['level']} {re.sub(r'[0-9a-f-]{36}', '<id>', event)} {detail}"
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
    env: dict[str, str], logs: Path, name: str, *, pool: str, concurrency: int, queues: str
) -> Service:
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
            "--without-gossip",
            "--without-mingle",
            f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
        ],
        env,
        logs,
    )


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
