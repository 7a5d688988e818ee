"""Task round trip through the real broker and a real worker, against raw Redis, in one run.

Starts one prefork worker process (concurrency 1) on a Redis database index of its own, then:
- baseline: LPUSH + BRPOP on the same Redis server, the floor of any queue round trip;
- ``system.ping``: send, execute, store and fetch the result (broker + result backend);
- ``system.check``: the same plus Postgres and Redis work on the worker's event loop.

    uv run python bench/task_bench.py [--tasks 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_REDIS_DB = os.environ.get("BENCH_REDIS_DB", "13")
os.environ.update(
    CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}",
    CELERY_RESULT_BACKEND=f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}",
    LOG_LEVEL="WARNING",
)

import redis  # noqa: E402

from switchboard.ops.jobs import CHECK, PING  # noqa: E402
from workers.celery_app import celery_app  # noqa: E402


def percentiles(name: str, timings: list[float]) -> float:
    cuts = statistics.quantiles(timings, n=100)
    p50, p99 = statistics.median(timings) * 1e3, cuts[98] * 1e3
    print(f"  {name:<30} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    return p50


def redis_round_trips(count: int) -> list[float]:
    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        client.lpush("bench:queue", b"x")
        client.brpop(["bench:queue"], timeout=1)
        client.lpush("bench:reply", b"y")
        client.brpop(["bench:reply"], timeout=1)
        timings.append(time.perf_counter() - started)
    client.close()
    return timings


def task_round_trips(name: str, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        celery_app.send_task(name).get(timeout=30)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args()

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--app=workers.celery_app:celery_app",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--queues=default,runs,maintenance",
            "--without-gossip",
            "--without-mingle",
            "--hostname=bench@%h",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        celery_app.send_task(PING).get(timeout=60)
        task_round_trips(CHECK, 20)  # warm-up: pools open, code paths hot

        print(f"{args.tasks} sequential round trips, one prefork worker process")
        floor = percentiles("raw Redis push/pop x2", redis_round_trips(args.tasks))
        ping = percentiles("system.ping (broker+result)", task_round_trips(PING, args.tasks))
        check = percentiles("system.check (+PG, Redis)", task_round_trips(CHECK, args.tasks))
        print(
            f"  Celery adds {ping - floor:.2f} ms over raw Redis at p50;"
            f" the worker's async work adds {check - ping:.2f} ms more"
        )

        burst = 1000
        started = time.perf_counter()
        results = [celery_app.send_task(CHECK) for _ in range(burst)]
        for result in results:
            assert result.get(timeout=120)["status"] == "ok"
        elapsed = time.perf_counter() - started
        print(f"  {burst} system.check tasks queued at once: {burst / elapsed:.0f} tasks/s")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()


if __name__ == "__main__":
    main()
