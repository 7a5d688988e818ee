"""Switchboard's own entry points run as real processes on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# Starting a process imports the whole stack (the Agents SDK among it) under coverage: on a
# busy two-core machine that can take tens of seconds.
STARTUP_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_module(
    module: str, env: Mapping[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Served:
    """``python -m module`` started in the background: ``wait`` returns once ``url`` answers
    (any status). Processes started one after the other, then waited for, start up at once."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        url: str,
        log_path: Path,
        *,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.module = module
        self.url = url
        self.log_path = log_path
        self._auth = auth
        self._answered = False
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._deadline = time.monotonic() + STARTUP_SECONDS

    def wait(self) -> None:
        while not self._answered:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited:\n{self.log_path.read_text()}")
            try:
                httpx.get(self.url, timeout=1, auth=self._auth)
                self._answered = True
            except httpx.TransportError:
                if time.monotonic() > self._deadline:
                    raise RuntimeError(
                        f"{self.module} did not answer:\n{self.log_path.read_text()}"
                    ) from None
                time.sleep(0.1)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited 15 s later."""
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_all(served: list[Served]) -> None:
    """Every one told to stop first, so that they shut down at once."""
    for each in served:
        each.terminate()
    for each in served:
        each.stop()


@contextmanager
def serving(
    module: str,
    env: Mapping[str, str],
    url: str,
    log_path: Path,
    *,
    auth: tuple[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts ``python -m module`` and waits until ``url`` answers (any status)."""
    served = Served(module, env, url, log_path, auth=auth)
    try:
        served.wait()
        yield served.process
    finally:
        served.stop()
