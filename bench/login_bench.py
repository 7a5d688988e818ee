"""Logins and refreshes per second on one API process, with the production bcrypt cost.

Starts ``python -m api`` (one uvicorn process) on a database of its own, registers users, then
drives it over loopback HTTP with concurrent clients. The ceiling, measured in the same run: raw
``bcrypt.checkpw`` at the same cost on as many threads as the machine has cores, since a login
is one bcrypt check plus bookkeeping.

    uv run python bench/login_bench.py [--seconds 10] [--clients 8] [--cost 12]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "switchboard_bench_login"
PASSWORD = "a long enough passphrase"


def raw_bcrypt_rate(cost: int, seconds: float, threads: int) -> float:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=cost))

    def work(deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            bcrypt.checkpw(PASSWORD.encode(), hashed)
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, [started + seconds] * threads))
    return total / (time.perf_counter() - started)


def fresh_database() -> str:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"


async def drive(base: str, clients: int, seconds: float, users: list[str]) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        refresh_tokens: list[str] = []

        async def login_loop(index: int, deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                email = users[(index + done * clients) % len(users)]
                response = await http.post(
                    "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
                assert response.status_code == 200, response.text
                refresh_tokens.append(response.json()["refresh_token"])
                done += 1
            return done

        started = time.perf_counter()
        logins = await asyncio.gather(*(login_loop(i, started + seconds) for i in range(clients)))
        login_rate = sum(logins) / (time.perf_counter() - started)

        chains = refresh_tokens[:clients]

        async def refresh_loop(index: int, deadline: float) -> int:
            done, token = 0, chains[index]
            while time.perf_counter() < deadline:
                response = await http.post("/api/v1/auth/refresh", json={"refresh_token": token})
                assert response.status_code == 200, response.text
                token = response.json()["refresh_token"]
                done += 1
            return done

        started = time.perf_counter()
        refreshes = await asyncio.gather(
            *(refresh_loop(i, started + seconds) for i in range(len(chains)))
        )
        refresh_rate = sum(refreshes) / (time.perf_counter() - started)
    return login_rate, refresh_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cost", type=int, default=12)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    ceiling = raw_bcrypt_rate(args.cost, args.seconds / 2, cores)

    env = {
        **os.environ,
        "DATABASE_URL": fresh_database(),
        "API_PORT": str(args.port),
        "IDENTITY_BCRYPT_COST": str(args.cost),
        "IDENTITY_LOGIN_IP_MAX_ATTEMPTS": "100000000",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "auth", "keys", "rotate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health/live", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        users = [f"bench-{uuid.uuid4().hex[:8]}@example.com" for _ in range(args.clients * 2)]
        for email in users:
            response = httpx.post(
                f"{base}/api/v1/auth/register",
                timeout=30,
                json={"email": email, "password": PASSWORD, "tenant_name": "B"},
            )
            assert response.status_code == 201, response.text
        login_rate, refresh_rate = asyncio.run(drive(base, args.clients, args.seconds, users))
    finally:
        api.terminate()
        api.wait(timeout=30)

    print(
        f"bcrypt cost {args.cost}, one API process, {args.clients} concurrent clients, "
        f"{args.seconds:.0f} s each, {cores} cores"
    )
    print(f"  raw bcrypt.checkpw on {cores} threads  {ceiling:8.1f} /s  (ceiling for logins)")
    print(
        f"  logins                          {login_rate:8.1f} /s  "
        f"({login_rate / ceiling:.0%} of the ceiling)"
    )
    print(f"  refreshes                       {refresh_rate:8.1f} /s")


if __name__ == "__main__":
    main()
