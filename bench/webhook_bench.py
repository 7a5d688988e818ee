"""Stripe webhooks into one API process, and usage reports out of one worker, against floors.

Creates a PostgreSQL database of its own (migrated with alembic) and uses a Redis index of its
own (``BENCH_REDIS_DB``, 13; flushed before, between the parts and after), then:

- webhooks: starts ``python -m api`` (one uvicorn process) with ``STRIPE_WEBHOOK_SECRET`` and
  sends ``--webhooks`` distinct signed ``invoice.paid`` events to
  ``POST /api/v1/billing/webhooks/stripe`` from ``--concurrency`` concurrent clients (one
  httpx.AsyncClient with one keep-alive connection each: a single client sharing a pool of 50
  connections is slower than the API). Each is verified, inserted into
  ``stripe_event`` and enqueues one ``billing.webhooks.process`` job after its commit. Then the
  same events again, freshly signed as Stripe signs every delivery: redeliveries, which insert
  nothing and enqueue nothing. Baseline: ``GET /health/live`` on the same process at the same
  concurrency, the HTTP floor of that process. The three kinds alternate in five rounds so noise
  hits them alike. No worker runs: afterwards ``stripe_event`` must hold exactly ``--webhooks``
  rows and the ``maintenance`` list in Redis exactly one job per new event.
- usage reporting: starts the local fake Stripe (``tests.support.stripe_server``) in this
  process, inserts ``--tenants`` tenants with a Stripe customer (``cus_bench_<n>``) and
  ``--usage-rows`` pending ``usage_record`` rows spread over them, starts one Celery worker
  (prefork, concurrency 1, queue ``maintenance``) with ``BILLING_REPORT_BATCH=--batch``, sends
  ``billing.usage.report`` and waits until every row is ``reported``. Checks: the fake received
  ceil(rows of the tenant / batch) meter events per customer adding up to the tokens inserted,
  and every row carries its quantity. Baseline: as many meter events sent from this process,
  one after the other, with ``StripeGateway.report_tokens`` to the same fake: the Stripe round
  trip floor of a report.

Every webhook answer must be 200; targets are printed, not asserted; the exit status is 1 if any
request or check failed.

    uv run --frozen python bench/webhook_bench.py [--webhooks 5000] [--concurrency 50]
        [--tenants 20] [--usage-rows 20000] [--batch 200] [--skip webhooks,usage]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench, tests, as a script
from bench.services import (
    REDIS_URL,
    Service,
    cpu_seconds,
    create_database,
    drop_database,
    free_port,
    p50_p99_ms,
    run_module,
    start_api,
    start_worker,
    workspace,
)
from switchboard.billing.jobs import PROCESS_WEBHOOK, REPORT_USAGE
from switchboard.ops import jobs as ops_jobs

WEBHOOK_PATH = "/api/v1/billing/webhooks/stripe"
WEBHOOK_SECRET = "whsec_switchboard_bench"
STRIPE_API_KEY = "sk_test_bench"
METER_EVENT_NAME = "switchboard_tokens"
PROCESS_TASK = PROCESS_WEBHOOK
ROUNDS = 5


# --- figures and checks -----------------------------------------------------------------------


@dataclass
class Checks:
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        print(f"  check: {what}: {'ok' if ok else 'FAILED'}")
        if not ok:
            self.failed.append(what)


@dataclass
class Load:
    """Requests of one kind, accumulated over the rounds."""

    name: str
    count: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    api_cpu: float = 0.0  # seconds of the API process's CPU while these requests ran

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else float("nan")

    def print(self) -> None:
        p50, p99 = p50_p99_ms(self.latencies)
        print(
            f"  {self.name:<36} {self.rate:7,.0f} /s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
            f"   API CPU {self.api_cpu / max(self.count, 1) * 1e3:.2f} ms each"
            f"   ({self.count:,} in {self.elapsed:.1f} s, {self.failures} not 200)"
        )


Request = Callable[[httpx.AsyncClient], Any]


async def drive(
    clients: Sequence[httpx.AsyncClient],
    load: Load,
    requests: Sequence[Request],
    api_pid: int | None = None,
) -> None:
    """Sends ``requests`` from every client at once, each taking the next one when done."""
    pending = iter(requests)

    async def one_client(client: httpx.AsyncClient) -> None:
        for request in pending:
            started = time.perf_counter()
            try:
                response = await request(client)
            except httpx.HTTPError as exc:
                load.failures += 1
                load.problems.append(f"{type(exc).__name__}: {exc!r}")
                continue
            load.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                load.failures += 1
                load.problems.append(f"HTTP {response.status_code}: {response.text[:200]}")

    cpu = cpu_seconds(api_pid) if api_pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(one_client(client) for client in clients))
    load.elapsed += time.perf_counter() - started
    load.count += len(requests)
    load.api_cpu += cpu_seconds(api_pid) - cpu if api_pid else 0.0


# --- (a) webhooks -----------------------------------------------------------------------------


def stripe_event() -> dict[str, Any]:
    """An ``invoice.paid`` event for a subscription we do not know: stored, ignored later."""
    invoice = uuid.uuid4().hex
    return {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": "invoice.paid",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "data": {
            "object": {
                "id": f"in_{invoice[:24]}",
                "object": "invoice",
                "customer": f"cus_{invoice[8:22]}",
                "subscription": f"sub_{invoice[4:20]}",
                "amount_paid": random.randint(100, 100_000),
                "currency": "usd",
                "status": "paid",
                "number": f"BENCH-{random.randint(1, 10**6):06d}",
            }
        },
    }


def delivery(body: str) -> Request:
    """A POST of ``body``, signed now (Stripe signs every delivery anew)."""
    headers = {
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }

    def send(client: httpx.AsyncClient) -> Any:
        return client.post(WEBHOOK_PATH, content=body, headers=headers)

    return send


def health(client: httpx.AsyncClient) -> Any:
    return client.get("/health/live")


def http_clients(base: str, concurrency: int) -> list[httpx.AsyncClient]:
    """One client with one keep-alive connection per concurrent sender.

    A single httpx.AsyncClient sharing a pool of 50 connections costs this process a whole core
    in httpcore's pool bookkeeping and tops out near 330 requests/s against /health/live on
    this machine, far below what the API serves: the bench would measure its own client.
    """
    return [
        httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(concurrency)
    ]


def stored_and_queued(conninfo: str) -> tuple[int, int]:
    """Rows of ``stripe_event``, and the length of the ``maintenance`` list."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM stripe_event").fetchone()
    with redis.Redis.from_url(REDIS_URL) as client:
        queued = int(client.llen("maintenance"))
    return (int(row[0]) if row else 0), queued


async def webhook_load(
    base: str, api: Service, webhooks: int, concurrency: int, conninfo: str
) -> tuple[list[Load], set[str], float, float, list[str]]:
    health_load = Load("GET /health/live (baseline)")
    new_load = Load("webhooks, new events (accepted)")
    again_load = Load("webhooks, redeliveries")
    sent: set[str] = set()
    # After each round's new events, and again after their redeliveries: (rows, jobs) must be
    # (events sent so far) twice over; a redelivery that stored or enqueued anything shows here.
    mismatches: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(c) for c in http_clients(base, concurrency)]
        # Warm-up: connections opened, pools filled, code paths hot. Its events are removed.
        warm = [delivery(json.dumps(stripe_event())) for _ in range(2 * concurrency)]
        await drive(clients, Load("warm-up"), [health] * 4 * concurrency)
        await drive(clients, Load("warm-up"), warm)
        await drive(clients, Load("warm-up"), warm)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM stripe_event")
        redis.Redis.from_url(REDIS_URL).delete("maintenance")

        cpu_api, cpu_client, wall = cpu_seconds(api.pid), time.process_time(), time.perf_counter()
        per_round = [webhooks // ROUNDS + (r < webhooks % ROUNDS) for r in range(ROUNDS)]
        for number, size in enumerate(per_round, 1):
            if size == 0:
                continue
            api.check_alive()
            await drive(clients, health_load, [health] * size, api.pid)
            bodies = [json.dumps(stripe_event()) for _ in range(size)]
            sent.update(json.loads(body)["id"] for body in bodies)
            await drive(clients, new_load, [delivery(b) for b in bodies], api.pid)
            after_new = await asyncio.to_thread(stored_and_queued, conninfo)
            await drive(clients, again_load, [delivery(b) for b in bodies], api.pid)
            after_again = await asyncio.to_thread(stored_and_queued, conninfo)
            expected = (len(sent), len(sent))
            if after_new != expected or after_again != expected:
                mismatches.append(
                    f"round {number}: {len(sent)} sent; (rows, jobs) {after_new} after the new"
                    f" events, {after_again} after their redeliveries"
                )
        wall = time.perf_counter() - wall
        cpu = ((cpu_seconds(api.pid) - cpu_api) / wall, (time.process_time() - cpu_client) / wall)
    return [health_load, new_load, again_load], sent, cpu[0], cpu[1], mismatches


def queued_jobs(client: redis.Redis) -> list[tuple[str, str]]:
    """(task name, first argument) of every message in the ``maintenance`` list."""
    jobs = []
    for raw in client.lrange("maintenance", 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        jobs.append((str(message["headers"].get("task")), str(args[0]) if args else ""))
    return jobs


def webhooks_part(
    env: dict[str, str],
    logs: Path,
    database: str,
    args: argparse.Namespace,
    checks: Checks,
    services: list[Service],
) -> None:
    api, base = start_api({**env, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}, logs)
    services.append(api)
    conninfo = f"host=127.0.0.1 user=postgres dbname={database}"
    print(
        f"Webhooks: {args.webhooks:,} signed invoice.paid events, then the same again"
        f" (redeliveries), {args.concurrency} concurrent clients, one API process, no worker;"
        f" {ROUNDS} rounds alternating with the baseline"
    )
    loads, sent, cpu_api, cpu_client, mismatches = asyncio.run(
        webhook_load(base, api, args.webhooks, args.concurrency, conninfo)
    )
    for load in loads:
        load.print()
    floor, new, again = loads
    print(
        f"  {'accepted webhooks / health requests':<40} {new.rate / floor.rate:8.2f}x"
        f"   (redeliveries {again.rate / floor.rate:.2f}x;"
        f" per webhook {1e3 / new.rate - 1e3 / floor.rate:.2f} ms more than a health request)"
    )
    print(
        f"  CPU meanwhile, share of one core: API {cpu_api:.0%}, this client {cpu_client:.0%}"
        f" ({os.cpu_count()} cores)"
    )
    for load in loads:
        for problem in sorted(set(load.problems))[:3]:
            print(f"    {load.name}: {problem}")
        checks.check(load.failures == 0, f"every {load.name} answered 200")
    for mismatch in mismatches:
        print(f"    {mismatch}")
    checks.check(
        not mismatches, "each round: one row and one job per new event, none per redelivery"
    )

    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE processed_at IS NULL)"
            " FROM stripe_event"
        ).fetchone()
        stored_ids = {r[0] for r in conn.execute("SELECT id FROM stripe_event").fetchall()}
    rows, distinct, unprocessed = row if row else (0, 0, 0)
    client = redis.Redis.from_url(REDIS_URL)
    queue_length = int(client.llen("maintenance"))
    jobs = queued_jobs(client)
    client.close()
    job_ids = [event_id for task, event_id in jobs if task == PROCESS_TASK]
    print(
        f"  stripe_event rows: {rows:,} ({unprocessed:,} unprocessed);"
        f" LLEN maintenance: {queue_length:,} ({len(job_ids):,} {PROCESS_TASK},"
        f" {len(set(job_ids)):,} distinct events)"
    )
    checks.check(
        rows == distinct == args.webhooks and stored_ids == sent,
        f"stripe_event holds exactly the {args.webhooks:,} events sent",
    )
    checks.check(
        queue_length == args.webhooks
        and len(job_ids) == len(set(job_ids)) == args.webhooks
        and set(job_ids) == sent,
        f"maintenance holds exactly one {PROCESS_TASK} job per new event",
    )
    api.stop()


# --- (b) usage reporting ----------------------------------------------------------------------


def insert_usage(conninfo: str, tenants: int, rows: int) -> tuple[dict[str, int], dict[str, int]]:
    """Tenants, their customers and pending usage rows; rows and tokens per customer."""
    rows_of: dict[str, int] = {}
    tokens_of: dict[str, int] = {}
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    customers = [f"cus_bench_{n}" for n in range(tenants)]
    period = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(conninfo) as conn:
        with conn.cursor().copy("COPY tenant (id, name) FROM STDIN") as copy:
            for n, tenant_id in enumerate(tenant_ids):
                copy.write_row((tenant_id, f"Bench tenant {n}"))
        with conn.cursor().copy(
            "COPY billing_customer (tenant_id, stripe_customer_id) FROM STDIN"
        ) as copy:
            for tenant_id, customer in zip(tenant_ids, customers, strict=True):
                copy.write_row((tenant_id, customer))
        with conn.cursor().copy(
            "COPY usage_record (id, tenant_id, run_id, input_tokens, output_tokens, period_start,"
            " report_state, report_attempts) FROM STDIN"
        ) as copy:
            for n in range(rows):
                tenant = n % tenants
                input_tokens, output_tokens = random.randint(10, 5000), random.randint(1, 2000)
                copy.write_row(
                    (
                        uuid.uuid4(),
                        tenant_ids[tenant],
                        uuid.uuid4(),
                        input_tokens,
                        output_tokens,
                        period,
                        "pending",
                        0,
                    )
                )
                customer = customers[tenant]
                rows_of[customer] = rows_of.get(customer, 0) + 1
                tokens_of[customer] = tokens_of.get(customer, 0) + input_tokens + output_tokens
        conn.execute("ANALYZE tenant, billing_customer, usage_record")
    return rows_of, tokens_of


def wait_ready(ping: Any, worker: Service) -> None:
    """Until the worker answered ``system.ping``, or its log if it exits first."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    deadline = time.monotonic() + 90
    while True:
        try:
            ping.get(timeout=0.5)
            return
        except CeleryTimeout:
            if worker.process.poll() is not None or time.monotonic() > deadline:
                # Unsubscribed now: AsyncResult.__del__ would do it at exit, noisily.
                ping.backend.remove_pending_result(ping)
                ping.backend = None
                worker.check_alive()
                raise RuntimeError(f"the worker did not answer:\n{worker.tail()}") from None


def wait_reported(conninfo: str, rows: int, worker: Service, deadline: float) -> float:
    """Seconds until no row is pending or sending any more (polled every 20 ms)."""
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM usage_record WHERE report_state IN ('pending', 'sending')"
            ).fetchone()
            if row is not None and row[0] == 0:
                return time.perf_counter() - started
            worker.check_alive()
            if time.perf_counter() - started > deadline:
                raise RuntimeError(f"{row[0] if row else '?'} of {rows} rows still unreported")
            time.sleep(0.02)


async def direct_reports(url: str, events: int) -> list[float]:
    from switchboard.billing.gateway import StripeGateway
    from switchboard.billing.settings import StripeSettings

    gateway = StripeGateway(
        StripeSettings.model_validate(
            {"api_key": STRIPE_API_KEY, "api_base": url, "meter_event_name": METER_EVENT_NAME}
        )
    )
    at = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    for n in range(10):  # warm-up
        await gateway.report_tokens(
            f"bench-warm-{run}-{n}", customer_id="cus_direct", tokens=1, at=at
        )
    timings = []
    for n in range(events):
        started = time.perf_counter()
        done = await gateway.report_tokens(
            f"bench-direct-{run}-{n}", customer_id="cus_direct", tokens=200, at=at
        )
        timings.append(time.perf_counter() - started)
        assert done, "the fake refused a fresh identifier"
    return timings


def usage_part(
    env: dict[str, str],
    logs: Path,
    database: str,
    args: argparse.Namespace,
    checks: Checks,
    services: list[Service],
) -> None:
    from tests.support.stripe_server import StripeServer
    from workers.celery_app import celery_app

    conninfo = f"host=127.0.0.1 user=postgres dbname={database}"
    fake = StripeServer(port=free_port()).start()
    try:
        fake.add_price("price_bench_tokens", usage_type="metered", meter="mtr_bench")
        started = time.perf_counter()
        rows_of, tokens_of = insert_usage(conninfo, args.tenants, args.usage_rows)
        inserted_in = time.perf_counter() - started
        worker = start_worker(
            {
                **env,
                "STRIPE_API_KEY": STRIPE_API_KEY,
                "STRIPE_API_BASE": fake.url,
                "BILLING_REPORT_BATCH": str(args.batch),
            },
            logs,
            "worker",
            pool="prefork",
            concurrency=1,
            queues="maintenance",
        )
        services.append(worker)
        try:
            wait_ready(celery_app.send_task(ops_jobs.PING), worker)
            print(
                f"Usage reporting: {args.usage_rows:,} pending usage rows of {args.tenants}"
                f" tenants (inserted in {inserted_in:.1f} s), batches of {args.batch}, one"
                " prefork worker process (concurrency 1), the local fake Stripe in this process"
            )
            cpu_worker = cpu_seconds(worker.pid)
            sent_at = time.time()
            celery_app.send_task(REPORT_USAGE)
            elapsed = wait_reported(conninfo, args.usage_rows, worker, deadline=120)
            cpu_worker = cpu_seconds(worker.pid) - cpu_worker
        finally:
            worker.stop()
        events = fake.meter_events(METER_EVENT_NAME)
        requests = fake.requests_to("POST", "/v1/billing/meter_events")
        times = sorted(r.at for r in requests)
        refused = [r for r in requests if r.status != 200 or r.replayed]
        expected = {c: math.ceil(n / args.batch) for c, n in rows_of.items()}
        count_of: dict[str, int] = {}
        for event in events:
            customer = event["payload"]["stripe_customer_id"]
            count_of[customer] = count_of.get(customer, 0) + 1
        totals = {c: int(v) for c, v in fake.meter_event_totals(METER_EVENT_NAME).items()}
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE report_state = 'reported'),"
                " count(*) FILTER (WHERE reported_quantity = input_tokens + output_tokens),"
                " count(DISTINCT report_batch_id), count(DISTINCT stripe_identifier)"
                " FROM usage_record"
            ).fetchone()
        reported, quantified, batches, identifiers = row if row else (0, 0, 0, 0)

        print(
            f"  {'worker: rows reported':<40} {args.usage_rows / elapsed:8,.0f} /s"
            f"   ({args.usage_rows:,} rows in {elapsed:.2f} s from send_task)"
        )
        print(
            f"  {'worker: meter events sent':<40} {len(events) / elapsed:8,.0f} /s"
            f"   ({len(events)} events, {elapsed / max(len(events), 1) * 1e3:.2f} ms each)"
        )
        steady = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else float("nan")
        if times:
            print(
                f"  first meter event {(times[0] - sent_at) * 1e3:.0f} ms after send_task"
                f" (pick-up, skip, form batches), last {(times[-1] - sent_at) * 1e3:.0f} ms"
                f" ({steady * 1e3:.2f} ms apart: send, mark reported, commit);"
                f" worker CPU {cpu_worker / elapsed:.0%} of one core"
            )
        checks.check(
            len(requests) == len(events) and not refused,
            f"one meter event request per batch, each answered 200 ({len(requests)} requests,"
            f" {len(refused)} refused or replayed)",
        )
        checks.check(
            reported == quantified == args.usage_rows,
            f"all {args.usage_rows:,} rows reported with their quantity ({reported:,})",
        )
        checks.check(
            count_of == expected,
            f"ceil(rows/batch) meter events per customer ({sum(expected.values())} expected,"
            f" {len(events)} received, {batches} batches, {identifiers} identifiers)",
        )
        checks.check(totals == tokens_of, "meter event totals per customer = tokens inserted")

        timings = asyncio.run(direct_reports(fake.url, max(len(events), 1)))
        direct = sum(timings)
        p50, p99 = p50_p99_ms(timings)
        direct_rate = len(timings) / direct
        print(
            f"  {'direct StripeGateway.report_tokens':<40} {direct_rate:8,.0f} /s"
            f"   (sequential from this process; p50 {p50:.2f} ms, p99 {p99:.2f} ms)"
        )
        worker_each, direct_each = elapsed / max(len(events), 1), direct / len(timings)
        print(
            f"  {'per meter event, worker / direct':<40} {worker_each / direct_each:8.2f}x"
            f"   ({worker_each * 1e3:.2f} ms vs {direct_each * 1e3:.2f} ms;"
            f" between events {steady / direct_each:.2f}x)"
        )
    finally:
        fake.stop()


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--webhooks", type=int, default=5000, help="distinct events to send")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent HTTP clients")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--usage-rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200, help="BILLING_REPORT_BATCH")
    parser.add_argument("--skip", default="", help="comma-separated: webhooks,usage")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    database, work, env = workspace(
        "webhook",
        STRIPE_API_KEY="",
        STRIPE_API_BASE="",
        STRIPE_WEBHOOK_SECRET="",
        STRIPE_METER_EVENT_NAME=METER_EVENT_NAME,
    )
    services: list[Service] = []
    checks = Checks()
    started = time.perf_counter()

    redis.Redis.from_url(REDIS_URL).flushdb()
    create_database(database)
    kept = False
    try:
        run_module(env, "alembic", "upgrade", "head")
        run_module(env, "switchboard.cli", "auth", "keys", "rotate")
        if "webhooks" not in skip:
            webhooks_part(env, work, database, args, checks, services)
            redis.Redis.from_url(REDIS_URL).flushdb()  # the webhook jobs: no worker wants them
        if "usage" not in skip:
            usage_part(env, work, database, args, checks, services)
    except BaseException:
        kept = True
        raise
    finally:
        for service in reversed(services):
            service.stop()
        if checks.failed or kept:
            for service in services:
                print(f"  warnings and errors in {service.log_path}:\n{service.complaints()}")
        redis.Redis.from_url(REDIS_URL).flushdb()
        drop_database(database)
        if checks.failed or kept:
            print(f"logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(checks.failed)} checks failed; {time.perf_counter() - started:.0f} s in all")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
