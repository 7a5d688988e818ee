"""A run the model provider fails tells its client a fixed message, stored and published; the
provider's own words (which can quote the request) stay in the worker's log."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from agents.exceptions import MaxTurnsExceeded, ModelBehaviorError, UserError
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy.exc import ProgrammingError

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, User
from switchboard.runs.events import replay
from switchboard.runs.failures import AGENT_ERROR, INTERNAL_ERROR, MODEL_ERROR, failure_of
from switchboard.settings import Settings
from tests.billing.conftest import new_tenant
from tests.support.auth import bearer
from tests.support.processes import free_port
from tests.support.waiting import eventually
from tests.support.worker import WorkerProcess, start_worker, stop_worker, wait_until_ready

PROVIDER_DETAIL = "provider-detail-quoting-the-request-91c4"


class _RefusingProvider(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that refuses every completion, saying too much."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {"error": {"message": PROVIDER_DETAIL, "type": "invalid_request_error"}}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _RefusingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def runs_worker(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = start_worker(
        tmp_path_factory.mktemp("runs-worker"),
        pool="threads",
        concurrency=2,
        queues="runs",
        # wait_until_ready reads the "ready." line, logged at INFO.
        env={
            "LOG_LEVEL": "INFO",
            "OPENAI_API_KEY": "sk-test-provider",
            "OPENAI_BASE_URL": provider,
        },
    )
    try:
        wait_until_ready(worker)
        yield worker
    finally:
        stop_worker(worker)


@pytest.fixture
async def owner(
    committed: SessionMaker, committed_keys: KeySnapshot, settings: Settings
) -> dict[str, str]:
    """A committed tenant's owner: the worker reads the run from Postgres."""
    tenant = await new_tenant(committed)
    async with committed() as session, session.begin():
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add(user)
        await session.flush()
        session.add(Membership(tenant_id=tenant, user_id=user.id, role="owner"))
    return bearer(committed_keys, settings, tenant, "owner", subject=user.id)


async def test_a_failed_provider_call_is_told_with_a_fixed_message(
    live_client: AsyncClient, owner: dict[str, str], redis: Redis, runs_worker: WorkerProcess
) -> None:
    accepted = await live_client.post("/api/v1/chat", json={"message": "hello"}, headers=owner)
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]

    async def failed() -> dict[str, Any] | None:
        read = await live_client.get(f"/api/v1/runs/{run_id}", headers=owner)
        return dict(read.json()) if read.json()["status"] == "failed" else None

    run = await eventually(failed, timeout=60)

    fixed = {"code": "model_error", "message": "The model provider failed."}
    assert run["error"] == fixed
    events = await replay(redis, run_id, after=0)
    assert events[-1].type == "run.failed"
    assert events[-1].data["error"] == fixed
    assert PROVIDER_DETAIL not in json.dumps(run)
    assert all(PROVIDER_DETAIL not in json.dumps(event.data) for event in events)
    # The operator still has the provider's words, next to the run they belong to.
    logged = [line for line in runs_worker.log().splitlines() if run_id in line]
    [failure] = [line for line in logged if '"event": "runs.failed"' in line]
    assert PROVIDER_DETAIL in failure


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (openai.APIConnectionError(request=httpx.Request("POST", "http://llm/v1")), MODEL_ERROR),
        (ModelBehaviorError("the model called a tool that does not exist"), MODEL_ERROR),
        (MaxTurnsExceeded("Max turns (10) exceeded"), AGENT_ERROR),
        (UserError("an agent is misconfigured"), INTERNAL_ERROR),
        (ProgrammingError("SELECT secret", {}, Exception("relation missing")), INTERNAL_ERROR),
        (KeyError("secret"), INTERNAL_ERROR),
    ],
)
def test_each_kind_of_failure_has_its_fixed_code_and_message(
    exc: Exception, expected: object
) -> None:
    assert failure_of(exc) == expected
