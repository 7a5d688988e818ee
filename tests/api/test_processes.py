"""The API as it really starts: ``python -m api``, with uvicorn and several worker processes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.support.metrics import sample
from tests.support.processes import Served, free_port, run_module, serving, stop_all


def test_invalid_setting_stops_start_up_naming_the_variable() -> None:
    result = run_module("api", {"DATABASE_POOL_SIZE": "lots", "API_PORT": str(free_port())})

    assert result.returncode == 2
    assert "DATABASE_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_refuses_insecure_defaults_naming_the_variable() -> None:
    result = run_module("api", {"ENVIRONMENT": "production", "API_PORT": str(free_port())})

    assert result.returncode == 2
    assert "FLOWER_PASSWORD" in result.stderr


def test_metrics_add_up_across_api_processes(tmp_path: Path) -> None:
    """Two API processes sharing one PROMETHEUS_MULTIPROC_DIR report one set of series."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    ports = [free_port(), free_port()]
    labels = {"method": "GET", "route": "/health/live", "status": "200"}

    # Both started before either is waited for: they start up at once.
    processes = [
        Served(
            "api",
            {"API_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            f"http://127.0.0.1:{port}/health/live",
            tmp_path / f"api-{index}.log",
        )
        for index, port in enumerate(ports)
    ]
    try:
        for process in processes:
            process.wait()
        before = (
            sample(
                httpx.get(f"http://127.0.0.1:{ports[0]}/metrics").text,
                "http_requests_total",
                **labels,
            )
            or 0.0
        )
        for port in ports:
            for _ in range(20):
                assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        totals = [
            sample(
                httpx.get(f"http://127.0.0.1:{port}/metrics").text, "http_requests_total", **labels
            )
            for port in ports
        ]
    finally:
        stop_all(processes)

    assert totals == [before + 40, before + 40]


def test_idle_connections_close_after_the_keep_alive_setting(tmp_path: Path) -> None:
    """uvicorn's own default is 5 s; behind a load balancer whose idle timeout is longer, the
    API would close connections the balancer is about to reuse."""
    port = free_port()
    env = {"API_PORT": str(port), "API_KEEP_ALIVE_SECONDS": "1"}
    with (
        serving("api", env, f"http://127.0.0.1:{port}/health/live", tmp_path / "api.log"),
        socket.create_connection(("127.0.0.1", port), timeout=4) as conn,
    ):
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: api\r\n\r\n")
        received = conn.recv(4096)
        answered = time.monotonic()
        # Blocks until the API closes the idle connection; a timeout (4 s) fails the test.
        while chunk := conn.recv(4096):
            received += chunk
        idle = time.monotonic() - answered

    assert received.startswith(b"HTTP/1.1 200")
    assert 0.5 < idle < 3.5
