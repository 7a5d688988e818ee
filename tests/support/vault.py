"""A real OpenBao dev server (in memory, KV v2 at ``secret/``) for the Vault key store."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import hvac
import pytest

from tests.support.processes import free_port


@dataclass(frozen=True)
class VaultServer:
    url: str
    token: str
    log_path: Path


def bao_binary() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("the OpenBao CLI `bao` is missing: run `uv sync` (dev group)")
    return found


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"bao exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/v1/sys/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"bao did not become healthy:\n{log_path.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultServer]:
    workdir = tmp_path_factory.mktemp("openbao")
    log_path = workdir / "bao.log"
    token = secrets.token_urlsafe(24)
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address={address}",
                "-dev-no-store-token",
            ],
            cwd=workdir,
            # Only what the server needs: no BAO_*/VAULT_* from the developer's shell, and a
            # HOME of its own so nothing is written to the real one.
            env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(process, url, log_path)
        yield VaultServer(url=url, token=token, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def vault_client(vault_server: VaultServer) -> Iterator[hvac.Client]:
    client = hvac.Client(url=vault_server.url, token=vault_server.token)
    assert client.is_authenticated()
    yield client
    client.adapter.close()
