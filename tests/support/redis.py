"""The test run's own Redis database index, flushed before and after the session; and
private Redis servers for tests that stop and restart one."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from switchboard.settings import Settings
from tests.support.processes import free_port


@pytest.fixture(scope="session", autouse=True)
def _flushed_redis(settings: Settings) -> Iterator[None]:
    client = redis_sync.Redis.from_url(str(settings.redis.url))
    client.flushdb()
    yield
    client.flushdb()
    client.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(str(settings.redis.url))
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A ``redis-server`` of the module's own, which its tests may stop and start."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        with (self._directory / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                [
                    server,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis_sync.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_sync.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # no shutdown save: everything in it is lost
            self._process.wait()
