"""The TypeScript client's own tests (clients/typescript/test, Node's test runner) against a
real API process and runs worker.

Needs Node 20+ and ``npm ci --prefix clients/typescript`` (CI does both)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from switchboard.auth.keyring import KeySnapshot
from tests.support.worker import api_process, runs_worker_process

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
# Short enough for the expired-ticket test to wait it out; no leeway, so it expires on time.
TICKET_TTL_SECONDS = 10
# Starting both processes on a busy machine, compiling the tests and running them.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def api_server(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An API process and a runs worker, started side by side; the API's base URL."""
    tmp = tmp_path_factory.mktemp("ts-client")
    # Words come slowly enough that a stream can be cut while its run is still going.
    worker = runs_worker_process(tmp, env={"OFFLINE_MODEL_TOKEN_DELAY_MS": "20"})
    api = api_process(
        tmp / "api.log",
        env={
            "AUTH_STREAM_TICKET_TTL_SECONDS": str(TICKET_TTL_SECONDS),
            "AUTH_LEEWAY_SECONDS": "0",
        },
    )
    with ExitStack() as stack:
        # Whichever starts, the stack stops, even if the other failed to.
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = [pool.submit(stack.enter_context, manager) for manager in (worker, api)]
        started[0].result()
        yield started[1].result()


def test_typescript_client_against_the_api(api_server: str) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "the TypeScript client's tests need Node 20+ and npm"
    assert (CLIENT / "node_modules").is_dir(), (
        "run `npm ci --prefix clients/typescript` before the tests"
    )
    result = subprocess.run(
        [npm, "test"],
        cwd=CLIENT,
        env={
            **os.environ,
            "SWITCHBOARD_URL": api_server,
            "SWITCHBOARD_TICKET_TTL_SECONDS": str(TICKET_TTL_SECONDS),
            "NO_COLOR": "1",
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, (
        f"npm test exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
