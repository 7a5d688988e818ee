"""Beat on RedBeat (one scheduler at a time) and Flower with basic auth, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis as redis_sync

from switchboard.ops.service import HEARTBEAT_KEY
from switchboard.settings import Settings
from tests.support.processes import ROOT, STARTUP_SECONDS, free_port, serving
from tests.support.worker import WorkerProcess

# A lock short enough for a quick failover, long enough that a beat stalled for a few seconds
# on a loaded two-core machine does not lose it mid-test.
BEAT_ENV = {
    "BEAT_HEARTBEAT_SECONDS": "0.5",
    "BEAT_LOCK_TIMEOUT_SECONDS": "10",
    "LOG_LEVEL": "DEBUG",
}


def _start_beat(log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app=workers.celery_app:celery_app",
                "beat",
                "--loglevel=DEBUG",
            ],
            cwd=ROOT,
            env={**os.environ, **BEAT_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _heartbeats(client: redis_sync.Redis) -> int:
    return int(client.hget(HEARTBEAT_KEY, "count") or 0)


def _wait_for_more_heartbeats(client: redis_sync.Redis, than: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = _heartbeats(client)
        if count > than:
            return count
        time.sleep(0.1)
    raise AssertionError(f"no heartbeat beyond {than} within {timeout}s")


def _lock_holders(logs: list[Path]) -> list[int]:
    return [i for i, path in enumerate(logs) if "Acquired lock" in path.read_text(errors="replace")]


def test_two_beats_fire_each_entry_once_and_fail_over(
    settings: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    client = redis_sync.Redis.from_url(str(settings.redis.url))
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    beats = [_start_beat(path) for path in logs]
    try:
        _wait_for_more_heartbeats(client, 0, timeout=STARTUP_SECONDS)
        assert len(_lock_holders(logs)) == 1

        window = 4.0
        start = _heartbeats(client)
        time.sleep(window)
        fired = _heartbeats(client) - start
        period = float(BEAT_ENV["BEAT_HEARTBEAT_SECONDS"])
        # One scheduler fires about window/period times; two uncoordinated ones twice that.
        assert 0 < fired <= window / period + 2, fired

        holder = _lock_holders(logs)[0]
        beats[holder].send_signal(signal.SIGKILL)
        beats[holder].wait()
        after_kill = _heartbeats(client)
        _wait_for_more_heartbeats(client, after_kill + 1, timeout=40)
        assert _lock_holders(logs) == [0, 1]
    finally:
        for beat in beats:
            if beat.poll() is None:
                beat.terminate()
                beat.wait(timeout=15)
        client.close()


def test_flower_requires_basic_auth_and_shows_the_worker(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    port = free_port()
    env = {"FLOWER_PORT": str(port), "FLOWER_USER": "ops", "FLOWER_PASSWORD": "s3cret-for-test"}
    base = f"http://127.0.0.1:{port}"
    with serving("workers.flower", env, f"{base}/healthcheck", tmp_path / "flower.log"):
        assert httpx.get(f"{base}/").status_code == 401
        assert httpx.get(f"{base}/", auth=("ops", "wrong")).status_code == 401

        deadline = time.monotonic() + 30
        hostname = worker.hostname.split("@")[0]
        while True:
            response = httpx.get(
                f"{base}/api/workers", params={"refresh": "1"}, auth=("ops", "s3cret-for-test")
            )
            assert response.status_code == 200
            if any(name.startswith(hostname) for name in response.json()):
                break
            assert time.monotonic() < deadline, response.json()
            time.sleep(0.5)
