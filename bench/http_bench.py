"""Per-request cost of the API's middleware stack, against a bare FastAPI app, in one run.

Both apps answer the same route in-process through httpx's ASGI transport, so the difference
is what request ids, access logs, metrics, body limits and problem handlers add per request.

    uv run python bench/http_bench.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from contextlib import AsyncExitStack

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from api.main import create_app
from switchboard.settings import load_settings


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def measure(apps: dict[str, FastAPI], requests: int, rounds: int) -> dict[str, list[float]]:
    """Alternates between the apps round by round, so machine noise hits both alike."""
    timings: dict[str, list[float]] = {name: [] for name in apps}
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            manager = await stack.enter_async_context(LifespanManager(app))
            transport = ASGITransport(manager.app)
            clients[name] = await stack.enter_async_context(
                AsyncClient(transport=transport, base_url="http://bench")
            )
        for client in clients.values():
            for _ in range(200):  # warm-up
                await client.get("/health/live")
        for _ in range(rounds):
            for name, client in clients.items():
                for _ in range(requests // rounds):
                    started = time.perf_counter()
                    response = await client.get("/health/live")
                    timings[name].append(time.perf_counter() - started)
                    assert response.status_code == 200
    return timings


def summary(name: str, timings: list[float]) -> float:
    median_us = statistics.median(timings) * 1e6
    p99_us = statistics.quantiles(timings, n=100)[98] * 1e6
    print(
        f"  {name:<18} {len(timings) / sum(timings):>7.0f} req/s"
        f"   p50 {median_us:7.1f} us   p99 {p99_us:7.1f} us"
    )
    return median_us


def production_logging_app() -> FastAPI:
    app = create_app(load_settings(log={"level": "INFO", "format": "json"}))
    # Access logs are rendered as in production, then dropped instead of filling the terminal.
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    ours = production_logging_app()

    print(f"GET /health/live, {args.requests} sequential requests per app, in-process")
    timings = await measure(
        {"bare FastAPI": bare_app(), "Switchboard API": ours}, args.requests, args.rounds
    )
    baseline = summary("bare FastAPI", timings["bare FastAPI"])
    switchboard = summary("Switchboard API", timings["Switchboard API"])
    print(
        f"  middleware stack adds {switchboard - baseline:.1f} us per request at p50"
        f" ({switchboard / baseline:.2f}x the bare app)"
    )


if __name__ == "__main__":
    asyncio.run(main())
