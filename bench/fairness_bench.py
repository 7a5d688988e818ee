"""Plan limits and fair share, through the whole system, in one run.

Starts two ``python -m api`` processes (limits on, and ``RUNS_LIMITS_ENABLED=false``) and one
Celery worker on the ``runs`` queue (thread pool) on a PostgreSQL database and a Redis index
(``BENCH_REDIS_DB``, 13) of their own, with the offline model (no token delay), and measures:

- (a) fair share: tenant B's time to first token (``POST /api/v1/chat/stream`` to its first
  ``message.delta``), one request at a time, first with the system idle, then while tenant A
  floods ``--flood`` chats (``POST /api/v1/chat``, ``--flood-connections`` at once, a
  ``--flood-words``-word message each). A is on the free plan (10 runs a minute, 2 at once),
  or with ``--flood-concurrent N`` on a plan of N concurrent runs and no per-minute limit, so
  the admitted runs keep the worker busy; the excess is refused (429) either way. B is on a
  plan with no limits. Target: B's p50 under the flood at most twice
  its idle p50.
- (b) the cost of the limits: B's time to first token through the API with limits on and
  through the one with limits off, one request to each in turn so noise hits both. Target: at most
  0.5 ms added at p50. Also the admission alone (``Admission.admit`` in this process on the
  same Redis, plan cached), which is what the limits add to the request path.

Targets are printed, not asserted; the exit status is 1 if a stream of B failed.

    uv run --frozen python bench/fairness_bench.py [--flood 1000] [--ttft-requests 100]
        [--cost-requests 300] [--flood-concurrent 0] [--skip fair,cost]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.services, as a script
from bench.services import (
    REDIS_URL,
    Service,
    create_database,
    p50_p99_ms,
    put_on_plan,
    run_module,
    start_api,
    start_worker,
    tear_down,
    workspace,
)
from bench.stream_bench import chat_stream, http_client, message_of, met, sign_up, watched
from switchboard.billing.schemas import PlanLimits, TenantPlan
from switchboard.runs.admission import Admission
from switchboard.runs.settings import RunsSettings

FAIR_TARGET = 2.0
ADDED_TARGET_MS = 0.5


async def ttft_series(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, words: int
) -> tuple[list[float], int]:
    """``count`` sequential streams: seconds to the first delta, and how many failed."""
    timings: list[float] = []
    failed = 0
    for _ in range(count):
        result = await chat_stream(client, headers, message_of(words), deadline=60)
        if result.problem is None and result.first_delta is not None:
            timings.append(result.first_delta - result.started)
        else:
            failed += 1
            print(f"  B's stream failed: {result.problem}")
    return timings, failed


def line(name: str, timings: Sequence[float]) -> float:
    p50, p99 = p50_p99_ms(timings)
    print(f"  {name:<52} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={len(timings)})")
    return p50


async def fair_share(
    base: str,
    flooder: dict[str, str],
    victim: dict[str, str],
    args: argparse.Namespace,
) -> int:
    async with http_client(base, 4) as client:
        await ttft_series(client, victim, 10, args.ttft_words)  # warm-up
        idle, failed = await ttft_series(client, victim, args.ttft_requests, args.ttft_words)

    # The flood comes from a process of its own, so its client work does not slow the loop
    # that times B's streams.
    flooding = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child-flood",
        base,
        "--flood",
        str(args.flood),
        "--flood-connections",
        str(args.flood_connections),
        "--flood-words",
        str(args.flood_words),
        env={**os.environ, "BENCH_FLOOD_AUTHORIZATION": flooder["Authorization"]},
        stdout=asyncio.subprocess.PIPE,
    )
    assert flooding.stdout is not None
    await flooding.stdout.readline()  # it has started sending: time B from now on
    started = time.perf_counter()
    output = asyncio.create_task(flooding.communicate())
    busy: list[float] = []
    async with http_client(base, 4) as client:
        while not output.done():
            timings, bad = await ttft_series(client, victim, 1, args.ttft_words)
            busy += timings
            failed += bad
    answers = json.loads((await output)[0])
    elapsed = time.perf_counter() - started

    plan = f"{args.flood_concurrent} concurrent runs" if args.flood_concurrent else "free"
    print(
        f"(a) Fair share: tenant A floods {args.flood} chats ({args.flood_connections} at once,"
        f" {args.flood_words} words, plan: {plan}) in"
        f" {elapsed:.1f} s; tenant B's time to first token, one stream at a time"
    )
    print(f"  A's answers: {dict(sorted(answers.items()))}")
    idle_p50 = line("B idle", idle)
    busy_p50 = line("B while A floods", busy)
    ratio = busy_p50 / idle_p50
    print(f"  ratio {ratio:.2f}x (target <= {FAIR_TARGET:.0f}x: {met(ratio <= FAIR_TARGET)})")
    return failed


async def limits_cost(on: str, off: str, victim: dict[str, str], args: argparse.Namespace) -> int:
    with_limits: list[float] = []
    without: list[float] = []
    failed = 0
    async with http_client(on, 4) as limited, http_client(off, 4) as free:
        await ttft_series(limited, victim, 10, args.ttft_words)
        await ttft_series(free, victim, 10, args.ttft_words)
        # One each in turn, so a noisy moment hits both alike.
        for _ in range(args.cost_requests):
            timings, bad = await ttft_series(limited, victim, 1, args.ttft_words)
            with_limits += timings
            failed += bad
            timings, bad = await ttft_series(free, victim, 1, args.ttft_words)
            without += timings
            failed += bad
    print(f"(b) Cost of the limits: B's time to first token, {len(with_limits)} streams each")
    off_p50 = line("limits off (RUNS_LIMITS_ENABLED=false)", without)
    on_p50 = line("limits on", with_limits)
    added = on_p50 - off_p50
    print(
        f"  {'added at p50':<52} {added:8.2f} ms"
        f"   (target <= {ADDED_TARGET_MS} ms: {met(added <= ADDED_TARGET_MS)})"
    )
    admission = await admission_alone(args.admissions)
    line("admission alone (plan cached; Lua call on Redis)", admission)
    return failed


async def admission_alone(count: int) -> list[float]:
    client = AsyncRedis.from_url(REDIS_URL)
    admission = Admission(client, RunsSettings())
    plan = TenantPlan(
        plan_code="bench",
        limits=PlanLimits(
            seats=None,
            runs_per_minute=None,
            concurrent_runs=1_000_000,
            monthly_tokens=10**12,
            open_streams_per_user=None,
        ),
    )

    async def load(_: uuid.UUID) -> TenantPlan:
        return plan

    async def tokens(_: uuid.UUID) -> int:
        return 0

    tenant = uuid.uuid4()
    timings: list[float] = []
    try:
        for index in range(count + 100):
            started = time.perf_counter()
            await admission.admit(tenant, uuid.uuid4(), load_plan=load, load_tokens=tokens)
            if index >= 100:
                timings.append(time.perf_counter() - started)
    finally:
        await client.aclose()
    return timings


async def child_flood(base: str, args: argparse.Namespace) -> None:
    """Tenant A's chats, ``--flood-connections`` at a time; prints the answers as JSON."""
    headers = {"Authorization": os.environ["BENCH_FLOOD_AUTHORIZATION"]}
    answers: Counter[str] = Counter()
    pending = iter(range(args.flood))
    async with http_client(base, args.flood_connections) as client:
        print("flooding", flush=True)

        async def sender() -> None:
            for _ in pending:
                response = await client.post(
                    "/api/v1/chat",
                    json={"message": message_of(args.flood_words)},
                    headers=headers,
                )
                code = "202" if response.status_code == 202 else response.json()["code"]
                answers[code] += 1

        await asyncio.gather(*(sender() for _ in range(args.flood_connections)))
    print(json.dumps(dict(answers)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=1000)
    parser.add_argument("--flood-connections", type=int, default=50)
    parser.add_argument("--flood-words", type=int, default=100)
    parser.add_argument(
        "--flood-concurrent", type=int, default=0, help="A's concurrent runs (0: free plan)"
    )
    parser.add_argument("--ttft-requests", type=int, default=100)
    parser.add_argument("--ttft-words", type=int, default=8)
    parser.add_argument("--cost-requests", type=int, default=300, help="(b), per API")
    parser.add_argument("--worker-threads", type=int, default=50)
    parser.add_argument("--admissions", type=int, default=2000)
    parser.add_argument("--skip", default="", help="comma-separated: fair,cost")
    parser.add_argument("--child-flood", help=argparse.SUPPRESS)  # the flood's own process
    args = parser.parse_args()
    if args.child_flood:
        asyncio.run(child_flood(args.child_flood, args))
        return
    skip = set(filter(None, args.skip.split(",")))

    database, work, env = workspace(
        "fair",
        IDENTITY_LOGIN_IP_MAX_ATTEMPTS="100000000",
        OFFLINE_MODEL_TOKEN_DELAY_MS="0",
    )
    services: list[Service] = []
    failures = 0
    redis.Redis.from_url(REDIS_URL).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")
        api, on = start_api(env, work, "api-limits-on")
        services.append(api)
        api_off, off = start_api({**env, "RUNS_LIMITS_ENABLED": "false"}, work, "api-limits-off")
        services.append(api_off)
        worker = start_worker(
            env, work, "worker", pool="threads", concurrency=args.worker_threads, queues="runs"
        )
        services.append(worker)
        flooder = asyncio.run(sign_up(on))
        victim = asyncio.run(sign_up(on))
        if args.flood_concurrent:
            put_on_plan(database, flooder, "bench-flood", concurrent_runs=args.flood_concurrent)
        put_on_plan(database, victim, "bench-unlimited")
        if "fair" not in skip:
            failures += asyncio.run(watched(fair_share(on, flooder, victim, args), services))
        if "cost" not in skip:
            failures += asyncio.run(watched(limits_cost(on, off, victim, args), services))
    except BaseException:
        kept = True
        raise
    finally:
        tear_down(services, database=database, work=work, failed=bool(failures), kept=kept)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
