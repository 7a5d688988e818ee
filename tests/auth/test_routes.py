"""Operators enqueue rotations through the API; a real worker runs them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from switchboard.settings import Settings
from tests.support.auth import access_header, claims_for, forge
from tests.support.worker import WorkerProcess


def _bearer(snapshot: KeySnapshot, settings: Settings, roles: list[str]) -> dict[str, str]:
    assert snapshot.signing_kid is not None
    token = forge(
        access_header(snapshot.signing_kid),
        claims_for(settings, roles=roles, jti=uuid.uuid4().hex),
        snapshot.signing_key,
    )
    return {"Authorization": f"Bearer {token}"}


async def test_operator_enqueues_a_cutover_that_a_worker_runs(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings, worker: WorkerProcess
) -> None:
    response = await client.post(
        "/api/v1/admin/keys/rotate",
        json={"action": "cutover"},
        headers=_bearer(committed_keys, settings, ["operator"]),
    )

    assert response.status_code == 202
    task_id = response.json()["task_id"]
    # The next key was published moments ago, so the worker refuses, and says so in its log.
    deadline = time.monotonic() + 20
    while True:
        events = [
            json.loads(line)
            for line in worker.log().splitlines()
            if line.startswith("{") and task_id in line
        ]
        if any(event["event"] == "auth.cutover_refused" for event in events):
            break
        assert time.monotonic() < deadline, worker.log()[-2000:]
        await asyncio.sleep(0.1)
    refused = next(event for event in events if event["event"] == "auth.cutover_refused")
    assert refused["task_name"] == "auth.keys.cutover"
    assert "may sign from" in refused["reason"]


async def test_rotate_is_the_default_action_and_validates_its_body(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    headers = _bearer(committed_keys, settings, ["operator"])

    default = await client.post("/api/v1/admin/keys/rotate", headers=headers)
    invalid = await client.post(
        "/api/v1/admin/keys/rotate", json={"action": "destroy"}, headers=headers
    )

    assert default.status_code == 202
    assert uuid.UUID(default.json()["task_id"])
    assert invalid.status_code == 422


async def test_owner_of_a_tenant_is_not_a_platform_operator(
    client: AsyncClient, committed_keys: KeySnapshot, settings: Settings
) -> None:
    headers = _bearer(committed_keys, settings, ["owner", "admin"])

    listed = await client.get("/api/v1/admin/keys", headers=headers)
    rotated = await client.post("/api/v1/admin/keys/rotate", headers=headers)

    assert listed.status_code == 403
    assert rotated.status_code == 403
