"""Outbound webhooks end to end: the API, a real runs worker and a real webhooks worker over
the test broker, delivering to real HTTP receivers, signatures checked by the
``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from httpx import AsyncClient
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from switchboard.settings import Settings
from switchboard.webhooks.jobs import DISPATCH
from tests.e2e.conftest import sign_up
from tests.support.app import serving
from tests.support.worker import (
    WorkerProcess,
    runs_worker_process,
    start_worker,
    stop_worker,
    wait_until_ready,
)
from tests.webhooks.receivers import ReceivedRequest, Receiver, Reply, TLSReceiver

ENDPOINTS = "/api/v1/webhooks/endpoints"
RETRY_SECONDS = 0.2
# The test workers' attempts give up fast: a hanging receiver costs a second, not fifteen.
WORKER_ENV = {
    "LOG_LEVEL": "INFO",
    "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
    "WEBHOOKS_RETRY_DELAYS_SECONDS": json.dumps([RETRY_SECONDS] * 4),
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "1",
    "WEBHOOKS_TIMEOUT_SECONDS": "1",
}


def webhooks_worker(tmp_dir: Path, ca_file: Path) -> WorkerProcess:
    # SSL_CERT_FILE: the worker trusts the test CA of ``tls_receiver``, and only it.
    env = {**WORKER_ENV, "SSL_CERT_FILE": str(ca_file)}
    process = start_worker(tmp_dir, pool="threads", concurrency=8, queues="webhooks", env=env)
    wait_until_ready(process)
    return process


@dataclass
class Workers:
    """The module's webhooks worker; a test that kills it starts the next."""

    tmp_dir: Path
    ca_file: Path
    webhooks: WorkerProcess

    def replace(self) -> WorkerProcess:
        self.webhooks = webhooks_worker(self.tmp_dir, self.ca_file)
        return self.webhooks


@pytest.fixture(scope="module")
def tls_receiver() -> Iterator[TLSReceiver]:
    with TLSReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def delivering(
    committed_keys: KeySnapshot,
    tmp_path_factory: pytest.TempPathFactory,
    tls_receiver: TLSReceiver,
) -> Iterator[Workers]:
    """A runs worker and a webhooks worker for the module."""
    tmp_dir = tmp_path_factory.mktemp("webhooks")
    ca_file = tmp_dir / "ca.pem"
    ca_file.write_bytes(tls_receiver.ca_pem)
    with runs_worker_process(tmp_path_factory.mktemp("runs")):
        workers = Workers(tmp_dir, ca_file, webhooks_worker(tmp_dir, ca_file))
        try:
            yield workers
        finally:
            stop_worker(workers.webhooks)


@pytest.fixture
async def api(settings: Settings, delivering: Workers) -> AsyncIterator[AsyncClient]:
    """The app as deployed, accepting receivers on this machine's loopback address."""
    local = settings.model_copy(
        update={"webhooks": settings.webhooks.model_copy(update={"allow_private_targets": True})}
    )
    async with serving(create_app(local)) as client:
        yield client


@pytest.fixture
async def owner(api: AsyncClient) -> dict[str, str]:
    return await sign_up(api)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def subscribe(
    api: AsyncClient, owner: dict[str, str], url: str, events: list[str]
) -> dict[str, Any]:
    created = await api.post(ENDPOINTS, json={"url": url, "events": events}, headers=owner)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def send_test(api: AsyncClient, owner: dict[str, str], endpoint_id: str) -> dict[str, Any]:
    sent = await api.post(f"{ENDPOINTS}/{endpoint_id}/test", headers=owner)
    assert sent.status_code == 202, sent.text
    return dict(sent.json())


async def arrived(receiver: Receiver, count: int, timeout: float = 15) -> list[ReceivedRequest]:
    return await asyncio.to_thread(receiver.wait_for, count, timeout)


async def log_of(
    api: AsyncClient, owner: dict[str, str], endpoint_id: str, count: int, timeout: float = 10
) -> list[dict[str, Any]]:
    """The endpoint's delivery log, oldest first, once it holds ``count`` rows."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await api.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=owner)
        assert answer.status_code == 200, answer.text
        rows = list(reversed(answer.json()))
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        await asyncio.sleep(0.05)


def verified(secret: str, request: ReceivedRequest) -> Any:
    return Webhook(secret).verify(request.body, dict(request.headers))


async def test_a_finished_run_is_delivered_signed_with_the_run_as_the_api_shows_it(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(api, owner, f"{receiver.url}/hooks", ["run.completed"])

    chat = await api.post("/api/v1/chat", json={"message": "hello there"}, headers=owner)
    assert chat.status_code == 202, chat.text
    run_id = chat.json()["run_id"]

    (request,) = await arrived(receiver, 1)
    payload = verified(endpoint["secret"], request)
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=owner)).json()
    assert payload["type"] == "run.completed"
    assert payload["data"] == run
    assert payload["data"]["status"] == "succeeded"
    assert request.path == "/hooks"
    assert request.header("content-type") == "application/json"
    assert request.header("webhook-id")
    assert abs(int(request.header("webhook-timestamp") or 0) - time.time()) < 60
    assert datetime.fromisoformat(payload["timestamp"]) <= datetime.now(UTC)
    (row,) = await log_of(api, owner, endpoint["id"], 1)
    assert row["status"] == "succeeded"
    assert row["response_status"] == 200
    assert row["event_type"] == "run.completed"
    assert row["event_id"] == request.header("webhook-id")
    assert row["attempt"] == 1
    assert row["next_attempt_at"] is None


async def test_another_secret_does_not_verify(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    await send_test(api, owner, endpoint["id"])
    (request,) = await arrived(receiver, 1)
    assert verified(endpoint["secret"], request)["type"] == "webhook.test"
    other = await subscribe(api, owner, receiver.url, ["webhook.test"])
    with pytest.raises(WebhookVerificationError):
        verified(other["secret"], request)


async def test_during_a_rotation_both_secrets_sign_and_either_verifies(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(api, owner, receiver.url, ["run.completed"])
    rotated = await api.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret", headers=owner)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]

    sent = await send_test(api, owner, endpoint["id"])

    (request,) = await arrived(receiver, 1)
    signatures = (request.header("webhook-signature") or "").split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    assert verified(new_secret, request)["data"]["endpoint_id"] == endpoint["id"]
    assert verified(endpoint["secret"], request)["type"] == "webhook.test"
    assert request.header("webhook-id") == sent["event_id"]


async def test_a_receiver_failing_three_times_gets_four_attempts_of_one_webhook_id(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    receiver.script(Reply.status(500), Reply.status(503), Reply.status(500), Reply())
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    sent = await send_test(api, owner, endpoint["id"])

    requests = await arrived(receiver, 4)
    assert {r.header("webhook-id") for r in requests} == {sent["event_id"]}
    for request in requests:
        assert verified(endpoint["secret"], request)["type"] == "webhook.test"
    rows = await log_of(api, owner, endpoint["id"], 4)
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "succeeded"]
    assert [r["response_status"] for r in rows] == [500, 503, 500, 200]
    assert [r["error"] for r in rows[:3]] == ["http_status"] * 3
    assert all(r["next_attempt_at"] is not None for r in rows[:3])
    assert {r["delivery_id"] for r in rows} == {sent["delivery_id"]}
    # Each retry waited its delay after the failure before it.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert all(gap >= RETRY_SECONDS * 0.9 for gap in gaps), gaps
    await _wait_for_endpoint(api, owner, endpoint["id"], failing_since=None)


async def test_a_hanging_receiver_times_out_and_the_delivery_is_retried(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    receiver.script(Reply.hang(), Reply())
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    await send_test(api, owner, endpoint["id"])

    first, second = await arrived(receiver, 2)
    assert first.header("webhook-id") == second.header("webhook-id")
    rows = await log_of(api, owner, endpoint["id"], 2)
    assert rows[0]["status"] == "failed"
    assert rows[0]["error"] == "timeout"
    assert rows[0]["response_status"] is None
    assert 900 <= rows[0]["duration_ms"] < 5000  # WEBHOOKS_TIMEOUT_SECONDS is 1
    assert rows[1]["status"] == "succeeded"


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    receiver.script(Reply.redirect(f"{receiver.url}/elsewhere"), Reply())
    endpoint = await subscribe(api, owner, f"{receiver.url}/in", ["webhook.test"])
    await send_test(api, owner, endpoint["id"])

    first, second = await arrived(receiver, 2)
    assert [first.path, second.path] == ["/in", "/in"]
    rows = await log_of(api, owner, endpoint["id"], 2)
    assert rows[0]["error"] == "redirect_not_followed"
    assert rows[0]["response_status"] == 302
    assert rows[1]["status"] == "succeeded"
    assert all(r.path != "/elsewhere" for r in receiver.requests)


async def test_a_delivery_that_never_succeeds_fails_after_its_last_attempt_and_redelivers(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver
) -> None:
    receiver.script(*[Reply.status(500)] * 5)
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    sent = await send_test(api, owner, endpoint["id"])

    await arrived(receiver, 5)  # the first attempt and four retries
    rows = await log_of(api, owner, endpoint["id"], 5)
    assert rows[-1]["status"] == "failed"
    assert rows[-1]["next_attempt_at"] is None
    await asyncio.sleep(RETRY_SECONDS * 3)
    assert len(receiver.requests) == 5, "no attempt after the last"
    current = (await api.get(f"{ENDPOINTS}/{endpoint['id']}", headers=owner)).json()
    assert current["enabled"] is True
    assert current["failing_since"] is not None

    again = await api.post(f"/api/v1/webhooks/deliveries/{rows[-1]['id']}/redeliver", headers=owner)
    assert again.status_code == 202, again.text
    assert again.json()["event_id"] == sent["event_id"]
    assert again.json()["delivery_id"] != sent["delivery_id"]
    requests = await arrived(receiver, 6)
    assert requests[-1].header("webhook-id") == sent["event_id"]
    rows = await log_of(api, owner, endpoint["id"], 6)
    assert rows[-1]["status"] == "succeeded"
    assert rows[-1]["attempt"] == 1
    await _wait_for_endpoint(api, owner, endpoint["id"], failing_since=None)


async def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_the_log_says_so(
    api: AsyncClient,
    owner: dict[str, str],
    receiver: Receiver,
    committed: SessionMaker,
    delivering: Workers,
) -> None:
    receiver.script(Reply.status(500))
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    # Time, controlled: the endpoint has failed since before the five-day window.
    async with committed() as session, session.begin():
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(endpoint["id"]))
            .values(failing_since=datetime.now(UTC) - timedelta(days=5, minutes=1))
        )
    await send_test(api, owner, endpoint["id"])

    await arrived(receiver, 1)
    rows = await log_of(api, owner, endpoint["id"], 2)
    assert [r["status"] for r in rows] == ["failed", "endpoint_disabled"]
    assert rows[1]["error"] == "failing"
    assert rows[0]["next_attempt_at"] is None
    current = await _wait_for_endpoint(api, owner, endpoint["id"], enabled=False)
    assert current["disabled_reason"] == "failing"
    await asyncio.sleep(RETRY_SECONDS * 3)
    assert len(receiver.requests) == 1, "a disabled endpoint gets no retry"
    assert "webhooks.endpoint_disabled" in delivering.webhooks.log()
    async with committed() as session:
        statuses = await session.scalars(
            select(WebhookDelivery.status).where(
                WebhookDelivery.endpoint_id == uuid.UUID(endpoint["id"])
            )
        )
        assert set(statuses) == {"failed"}

    refused = await api.post(f"{ENDPOINTS}/{endpoint['id']}/test", headers=owner)
    assert refused.status_code == 409
    assert refused.json()["code"] == "webhooks.endpoint_disabled"
    enabled = await api.patch(
        f"{ENDPOINTS}/{endpoint['id']}", json={"enabled": True}, headers=owner
    )
    assert enabled.json()["disabled_reason"] is None
    assert enabled.json()["failing_since"] is None


async def test_a_slow_endpoint_does_not_hold_back_another_tenants_deliveries(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver, settings: Settings
) -> None:
    """The hanging endpoint holds at most WEBHOOKS_ENDPOINT_CONCURRENCY attempts; the rest
    of its deliveries wait on the broker, not in the worker's eight threads."""
    healthy = await subscribe(api, owner, receiver.url, ["webhook.test"])
    with Receiver(default=Reply.hang()) as stuck:
        other_owner = await sign_up(api)
        hanging = await subscribe(api, other_owner, stuck.url, ["webhook.test"])
        for _ in range(12):
            await send_test(api, other_owner, hanging["id"])
        await asyncio.to_thread(stuck.wait_for, settings.webhooks.endpoint_concurrency, 10)

        sent = [await send_test(api, owner, healthy["id"]) for _ in range(5)]

        requests = await arrived(receiver, 5, timeout=5)
        assert {r.header("webhook-id") for r in requests} == {s["event_id"] for s in sent}
        # Never more in flight to it than its limit, though twelve were due.
        assert stuck.open_connections <= settings.webhooks.endpoint_concurrency


async def test_tls_receivers_are_reached_by_name_through_the_checked_address(
    api: AsyncClient, owner: dict[str, str], tls_receiver: TLSReceiver
) -> None:
    tls_receiver.reset()
    endpoint = await subscribe(api, owner, f"{tls_receiver.url}/tls", ["webhook.test"])
    await send_test(api, owner, endpoint["id"])
    (request,) = await arrived(tls_receiver, 1)
    assert request.server_name == "localhost"
    assert request.header("host") == tls_receiver.url.removeprefix("https://")
    assert verified(endpoint["secret"], request)["type"] == "webhook.test"


async def test_a_worker_killed_mid_delivery_still_delivers_with_the_same_webhook_id(
    api: AsyncClient,
    owner: dict[str, str],
    receiver: Receiver,
    delivering: Workers,
    celery_app: Celery,
) -> None:
    receiver.script(Reply.hang())
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    sent = await send_test(api, owner, endpoint["id"])
    (cut,) = await arrived(receiver, 1)
    killed = delivering.webhooks
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait()
    ended = [line for line in killed.log().splitlines() if sent["delivery_id"] in line]
    assert not any("webhooks.attempt_failed" in line for line in ended), "killed too late"

    delivering.replace()
    # Beat's dispatcher, sent by hand: it finds the delivery once the dead worker's lease ends.
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2:
        assert time.monotonic() < deadline, "never delivered after the kill"
        celery_app.send_task(DISPATCH)
        await asyncio.sleep(0.5)

    delivered = receiver.requests[1]
    assert delivered.header("webhook-id") == cut.header("webhook-id") == sent["event_id"]
    assert verified(endpoint["secret"], delivered)["type"] == "webhook.test"
    (row,) = await log_of(api, owner, endpoint["id"], 1)
    assert row["status"] == "succeeded"
    assert row["attempt"] == 2, "the attempt the kill cut off counts"


async def _wait_for_endpoint(
    api: AsyncClient, owner: dict[str, str], endpoint_id: str, **expected: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        current = dict((await api.get(f"{ENDPOINTS}/{endpoint_id}", headers=owner)).json())
        if all(current[key] == value for key, value in expected.items()):
            return current
        assert time.monotonic() < deadline, current
        await asyncio.sleep(0.05)


async def test_attempt_rows_match_the_receivers_view(
    api: AsyncClient, owner: dict[str, str], receiver: Receiver, committed: SessionMaker
) -> None:
    receiver.script(Reply.status(404), Reply(status_code=204))
    endpoint = await subscribe(api, owner, receiver.url, ["webhook.test"])
    await send_test(api, owner, endpoint["id"])
    await arrived(receiver, 2)
    await log_of(api, owner, endpoint["id"], 2)
    async with committed() as session:
        attempts = list(
            await session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.endpoint_id == uuid.UUID(endpoint["id"]))
                .order_by(WebhookAttempt.created_at)
            )
        )
    assert [a.response_status for a in attempts] == [404, 204]
    assert all(a.duration_ms is not None and a.duration_ms >= 0 for a in attempts)
