"""The webhooks API through the real app and Postgres: endpoints and their secrets, test
events, the delivery log and redeliveries, who may call what, and the errors."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import select, text, update

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import WebhookDelivery, WebhookEndpoint
from switchboard.settings import Settings
from switchboard.webhooks.jobs import DELIVER
from switchboard.webhooks.signing import SecretBox, SecretUnreadableError
from tests.support.app import in_test_transaction
from tests.support.jobs import SentJobs
from tests.support.members import Member, NewMember
from tests.webhooks.conftest import (
    ENDPOINTS,
    PROBLEM,
    add_attempts,
    deliveries_of,
    events_of,
)

REDELIVER = "/api/v1/webhooks/deliveries/{}/redeliver"
URL = "https://hooks.example.com/in"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 document with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:switchboard:problem:{code}"
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


async def create(
    api: AsyncClient, member: Member, *, events: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    body = {"url": URL, "events": events or ["run.completed"], **fields}
    response = await api.post(ENDPOINTS, json=body, headers=member.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def send_test_event(api: AsyncClient, member: Member, endpoint_id: str) -> dict[str, Any]:
    response = await api.post(f"{ENDPOINTS}/{endpoint_id}/test", headers=member.headers)
    assert response.status_code == 202, response.text
    queued: dict[str, Any] = response.json()
    return queued


async def stored_endpoint(sessionmaker: SessionMaker, endpoint_id: str) -> WebhookEndpoint:
    async with sessionmaker() as session:
        row = await session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
    assert row is not None
    return row


async def logged_delivery(
    api: AsyncClient, sessionmaker: SessionMaker, member: Member, endpoint_id: str, count: int
) -> tuple[WebhookDelivery, list[uuid.UUID]]:
    """A test event's delivery to the endpoint with ``count`` attempts logged a minute apart;
    the attempts' ids, oldest first."""
    queued = await send_test_event(api, member, endpoint_id)
    (delivery,) = await deliveries_of(sessionmaker, event_id=uuid.UUID(queued["event_id"]))
    start = datetime(2026, 12, 1, tzinfo=UTC)
    attempts = await add_attempts(
        sessionmaker, delivery, [start + timedelta(minutes=n) for n in range(count)]
    )
    return delivery, [attempt.id for attempt in attempts]


# --- endpoints ----------------------------------------------------------------------------


async def test_a_created_endpoint_shows_its_secret_once(
    webhooks_api: AsyncClient, owner: Member
) -> None:
    response = await webhooks_api.post(
        ENDPOINTS,
        json={
            "url": "HTTPS://Hooks.Example.COM:443/in?x=1",
            "events": ["run.failed", "webhook.test", "run.completed", "run.failed"],
            "description": "Our receiver",
        },
        headers=owner.headers,
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id",
        "url",
        "events",
        "description",
        "enabled",
        "disabled_reason",
        "failing_since",
        "created_at",
        "updated_at",
        "secret",
    }
    assert created["url"] == "https://hooks.example.com/in?x=1"
    # Repeats dropped, in the order the event types are listed.
    assert created["events"] == ["run.completed", "run.failed", "webhook.test"]
    assert created["description"] == "Our receiver"
    assert (created["enabled"], created["disabled_reason"], created["failing_since"]) == (
        True,
        None,
        None,
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32

    one = await webhooks_api.get(f"{ENDPOINTS}/{created['id']}", headers=owner.headers)
    listed = await webhooks_api.get(ENDPOINTS, headers=owner.headers)

    assert one.status_code == 200
    assert listed.status_code == 200
    shown = {key: value for key, value in created.items() if key != "secret"}
    assert one.json() == shown
    assert listed.json() == [shown]
    for read in (one, listed):
        assert secret not in read.text
        assert secret.removeprefix("whsec_") not in read.text


async def test_the_list_holds_the_tenants_endpoints_oldest_first(
    webhooks_api: AsyncClient, owner: Member, new_member: NewMember
) -> None:
    other = await new_member()
    first = await create(webhooks_api, owner, description="first")
    await create(webhooks_api, other, description="theirs")
    second = await create(webhooks_api, owner, description="second")

    listed = await webhooks_api.get(ENDPOINTS, headers=owner.headers)

    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()] == [first["id"], second["id"]]
    empty = await webhooks_api.get(ENDPOINTS, headers=(await new_member()).headers)
    assert empty.json() == []


async def test_patch_changes_each_field_given_and_only_those(
    webhooks_api: AsyncClient, owner: Member
) -> None:
    created = await create(webhooks_api, owner, events=["run.completed"], description="old")
    path = f"{ENDPOINTS}/{created['id']}"

    moved = await webhooks_api.patch(
        path, json={"url": "https://Other.Example.com/hooks"}, headers=owner.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["url"] == "https://other.example.com/hooks"
    assert moved.json()["events"] == ["run.completed"]
    assert moved.json()["description"] == "old"

    subscribed = await webhooks_api.patch(
        path,
        json={"events": ["usage.threshold_reached", "run.failed", "usage.threshold_reached"]},
        headers=owner.headers,
    )
    assert subscribed.json()["events"] == ["run.failed", "usage.threshold_reached"]
    assert subscribed.json()["url"] == "https://other.example.com/hooks"

    described = await webhooks_api.patch(path, json={"description": "new"}, headers=owner.headers)
    assert described.json()["description"] == "new"
    cleared = await webhooks_api.patch(path, json={"description": None}, headers=owner.headers)
    assert cleared.json()["description"] is None

    disabled = await webhooks_api.patch(path, json={"enabled": False}, headers=owner.headers)
    assert disabled.json()["enabled"] is False

    unchanged = await webhooks_api.patch(path, json={}, headers=owner.headers)
    assert unchanged.status_code == 200
    final = (await webhooks_api.get(path, headers=owner.headers)).json()
    assert {key: final[key] for key in ("url", "events", "description", "enabled")} == {
        "url": "https://other.example.com/hooks",
        "events": ["run.failed", "usage.threshold_reached"],
        "description": None,
        "enabled": False,
    }
    assert final["updated_at"] >= created["updated_at"]
    assert final["created_at"] == created["created_at"]


async def test_enabling_again_clears_the_reason_and_the_failure_window(
    webhooks_api: AsyncClient, sessionmaker: SessionMaker, owner: Member
) -> None:
    created = await create(webhooks_api, owner)
    path = f"{ENDPOINTS}/{created['id']}"
    failing_since = datetime(2026, 11, 20, tzinfo=UTC)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(created["id"]))
            .values(enabled=False, disabled_reason="failing", failing_since=failing_since)
        )
    shown = (await webhooks_api.get(path, headers=owner.headers)).json()
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "failing")
    assert datetime.fromisoformat(shown["failing_since"]) == failing_since

    enabled = await webhooks_api.patch(path, json={"enabled": True}, headers=owner.headers)

    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    assert (body["enabled"], body["disabled_reason"], body["failing_since"]) == (True, None, None)
    row = await stored_endpoint(sessionmaker, created["id"])
    assert (row.enabled, row.disabled_reason, row.failing_since) == (True, None, None)


async def test_a_refused_url_in_a_patch_changes_nothing(
    webhooks_api: AsyncClient, owner: Member
) -> None:
    created = await create(webhooks_api, owner, events=["run.completed"])
    path = f"{ENDPOINTS}/{created['id']}"

    refused = await webhooks_api.patch(
        path,
        json={"url": "https://10.0.0.1/in", "events": ["run.failed"], "description": "x"},
        headers=owner.headers,
    )

    body = assert_problem(refused, 422, "webhooks.invalid_url")
    assert body["errors"][0]["loc"] == ["body", "url"]
    shown = (await webhooks_api.get(path, headers=owner.headers)).json()
    assert (shown["url"], shown["events"], shown["description"]) == (
        URL,
        ["run.completed"],
        None,
    )


async def test_a_deleted_endpoint_is_gone_with_its_deliveries(
    webhooks_api: AsyncClient, sessionmaker: SessionMaker, owner: Member
) -> None:
    created = await create(webhooks_api, owner)
    kept = await create(webhooks_api, owner)
    path = f"{ENDPOINTS}/{created['id']}"
    delivery, _ = await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 2)

    deleted = await webhooks_api.delete(path, headers=owner.headers)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(
        await webhooks_api.get(path, headers=owner.headers), 404, "webhooks.endpoint_not_found"
    )
    assert_problem(
        await webhooks_api.delete(path, headers=owner.headers),
        404,
        "webhooks.endpoint_not_found",
    )
    assert await deliveries_of(sessionmaker, event_id=delivery.event_id) == []
    listed = (await webhooks_api.get(ENDPOINTS, headers=owner.headers)).json()
    assert [row["id"] for row in listed] == [kept["id"]]


# --- secrets ------------------------------------------------------------------------------


async def test_stored_secrets_are_sealed_and_bound_to_their_endpoint(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
) -> None:
    first = await create(webhooks_api, owner)
    other = await create(webhooks_api, owner)
    rotated = (
        await webhooks_api.post(f"{ENDPOINTS}/{first['id']}/rotate-secret", headers=owner.headers)
    ).json()

    async with sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT secret, previous_secret FROM webhook_endpoint WHERE id = :id"),
                {"id": uuid.UUID(first["id"])},
            )
        ).one()
    sealed, previous = bytes(row.secret), bytes(row.previous_secret)
    for stored, plain in ((sealed, rotated["secret"]), (previous, first["secret"])):
        key = base64.b64decode(plain.removeprefix("whsec_"))
        assert plain.encode() not in stored
        assert plain.removeprefix("whsec_").encode() not in stored
        assert key not in stored
    endpoint_id = uuid.UUID(first["id"])
    assert secret_box.open(endpoint_id, sealed) == rotated["secret"]
    assert secret_box.open(endpoint_id, previous) == first["secret"]
    with pytest.raises(SecretUnreadableError):
        secret_box.open(uuid.UUID(other["id"]), sealed)


async def test_rotating_keeps_the_old_secret_for_a_day(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
) -> None:
    created = await create(webhooks_api, owner)
    path = f"{ENDPOINTS}/{created['id']}/rotate-secret"

    before = datetime.now(UTC)
    response = await webhooks_api.post(path, headers=owner.headers)
    after = datetime.now(UTC)

    assert response.status_code == 200, response.text
    rotated = response.json()
    assert set(rotated) == {"secret", "previous_secret_expires_at"}
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    expires_at = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert before + timedelta(hours=24) <= expires_at <= after + timedelta(hours=24)
    row = await stored_endpoint(sessionmaker, created["id"])
    assert row.previous_secret_expires_at == expires_at
    assert row.previous_secret is not None
    assert secret_box.open(row.id, row.previous_secret) == created["secret"]
    assert secret_box.open(row.id, row.secret) == rotated["secret"]
    shown = await webhooks_api.get(f"{ENDPOINTS}/{created['id']}", headers=owner.headers)
    assert rotated["secret"] not in shown.text

    # Rotated again: the secret rotated out first stops at once.
    again = (await webhooks_api.post(path, headers=owner.headers)).json()
    row = await stored_endpoint(sessionmaker, created["id"])
    assert row.previous_secret is not None
    assert secret_box.open(row.id, row.previous_secret) == rotated["secret"]
    assert secret_box.open(row.id, row.secret) == again["secret"]
    assert len({created["secret"], rotated["secret"], again["secret"]}) == 3


# --- test events and redeliveries --------------------------------------------------------


async def test_a_test_event_goes_to_that_endpoint_alone(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    sent_jobs: SentJobs,
    owner: Member,
) -> None:
    # Neither subscribes to webhook.test; the test event goes to the one asked all the same,
    # and not to another one that does subscribe to it.
    target = await create(webhooks_api, owner, events=["run.completed"])
    await create(webhooks_api, owner, events=["webhook.test", "run.completed"])

    response = await webhooks_api.post(f"{ENDPOINTS}/{target['id']}/test", headers=owner.headers)

    assert response.status_code == 202, response.text
    queued = response.json()
    assert set(queued) == {"event_id", "delivery_id"}
    (event,) = await events_of(sessionmaker, owner.tenant_id)
    assert str(event.id) == queued["event_id"]
    assert event.type == "webhook.test"
    assert event.data["endpoint_id"] == target["id"]
    (delivery,) = await deliveries_of(sessionmaker, tenant_id=owner.tenant_id)
    assert str(delivery.id) == queued["delivery_id"]
    assert (str(delivery.endpoint_id), delivery.event_id, delivery.status) == (
        target["id"],
        event.id,
        "queued",
    )
    assert [(job.name, job.args, job.queue) for job in sent_jobs.jobs] == [
        (DELIVER, (queued["delivery_id"], target["id"]), "webhooks")
    ]


async def test_redelivering_an_attempt_sends_its_event_again(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    sent_jobs: SentJobs,
    owner: Member,
) -> None:
    created = await create(webhooks_api, owner)
    first, attempt_ids = await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 2)
    sent_jobs.jobs.clear()

    response = await webhooks_api.post(REDELIVER.format(attempt_ids[0]), headers=owner.headers)

    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["event_id"] == str(first.event_id)
    assert queued["delivery_id"] != str(first.id)
    deliveries = await deliveries_of(sessionmaker, event_id=first.event_id)
    assert {d.id for d in deliveries} == {first.id, uuid.UUID(queued["delivery_id"])}
    (again,) = [d for d in deliveries if d.id != first.id]
    assert (str(again.endpoint_id), again.status, again.attempts) == (created["id"], "queued", 0)
    assert len(await events_of(sessionmaker, owner.tenant_id)) == 1
    assert [(job.name, job.args) for job in sent_jobs.jobs] == [
        (DELIVER, (queued["delivery_id"], created["id"]))
    ]


async def test_redelivering_an_unknown_attempt_is_not_found(
    webhooks_api: AsyncClient, owner: Member
) -> None:
    response = await webhooks_api.post(REDELIVER.format(uuid.uuid4()), headers=owner.headers)

    assert_problem(response, 404, "webhooks.delivery_not_found")


async def test_a_disabled_endpoint_takes_no_test_and_no_redelivery(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    sent_jobs: SentJobs,
    owner: Member,
) -> None:
    created = await create(webhooks_api, owner)
    first, attempt_ids = await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 1)
    disabled = await webhooks_api.patch(
        f"{ENDPOINTS}/{created['id']}", json={"enabled": False}, headers=owner.headers
    )
    assert disabled.json()["enabled"] is False
    sent_jobs.jobs.clear()

    tested = await webhooks_api.post(f"{ENDPOINTS}/{created['id']}/test", headers=owner.headers)
    redelivered = await webhooks_api.post(REDELIVER.format(attempt_ids[0]), headers=owner.headers)

    assert_problem(tested, 409, "webhooks.endpoint_disabled")
    assert_problem(redelivered, 409, "webhooks.endpoint_disabled")
    assert len(await events_of(sessionmaker, owner.tenant_id)) == 1
    assert [d.id for d in await deliveries_of(sessionmaker, tenant_id=owner.tenant_id)] == [
        first.id
    ]
    assert sent_jobs.jobs == []


# --- the delivery log ---------------------------------------------------------------------


async def test_the_delivery_log_is_newest_first_in_pages(
    webhooks_api: AsyncClient, sessionmaker: SessionMaker, owner: Member
) -> None:
    created = await create(webhooks_api, owner)
    other = await create(webhooks_api, owner)
    delivery, attempt_ids = await logged_delivery(
        webhooks_api, sessionmaker, owner, created["id"], 5
    )
    # Two more at the same instant as the newest: the id orders them.
    newest = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=4)
    tied = await add_attempts(sessionmaker, delivery, [newest, newest], status="succeeded")
    await logged_delivery(webhooks_api, sessionmaker, owner, other["id"], 3)
    # The newest of the five was logged at that instant too: the three go by id, descending.
    at_newest = sorted([attempt_ids[4], *(attempt.id for attempt in tied)], reverse=True)
    expected = [*at_newest, *reversed(attempt_ids[:4])]
    path = f"{ENDPOINTS}/{created['id']}/deliveries"

    whole = await webhooks_api.get(path, headers=owner.headers)

    assert whole.status_code == 200, whole.text
    assert "link" not in whole.headers
    rows = whole.json()
    assert [uuid.UUID(row["id"]) for row in rows] == expected
    assert set(rows[0]) == {
        "id",
        "delivery_id",
        "event_id",
        "event_type",
        "status",
        "response_status",
        "duration_ms",
        "error",
        "attempt",
        "created_at",
        "next_attempt_at",
    }
    oldest = rows[-1]
    assert (oldest["delivery_id"], oldest["event_id"], oldest["event_type"]) == (
        str(delivery.id),
        str(delivery.event_id),
        "webhook.test",
    )
    assert (oldest["status"], oldest["response_status"], oldest["error"], oldest["attempt"]) == (
        "failed",
        500,
        "http_status",
        1,
    )

    paged: list[uuid.UUID] = []
    url: str | None = f"{path}?limit=2"
    pages = 0
    while url is not None:
        page = await webhooks_api.get(url, headers=owner.headers)
        assert page.status_code == 200, page.text
        assert len(page.json()) <= 2
        paged += [uuid.UUID(row["id"]) for row in page.json()]
        pages += 1
        link = page.links.get("next")
        url = link["url"] if link else None
        if url is not None:
            assert url.startswith(f"{path}?")
            assert "limit=2" in url
    assert paged == expected
    assert pages == 4  # 2 + 2 + 2 + 1 rows


async def test_a_cursor_not_from_the_api_is_refused(
    webhooks_api: AsyncClient, sessionmaker: SessionMaker, owner: Member
) -> None:
    created = await create(webhooks_api, owner)
    await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 3)
    path = f"{ENDPOINTS}/{created['id']}/deliveries"
    first = await webhooks_api.get(f"{path}?limit=1", headers=owner.headers)
    cursor = httpx.URL(first.links["next"]["url"]).params["cursor"]

    for bad in ("not-a-cursor", cursor[:-2], cursor + "A", "e30"):
        response = await webhooks_api.get(
            path, params={"cursor": bad, "limit": 1}, headers=owner.headers
        )
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "cursor"]
    for limit in (0, 1001):
        response = await webhooks_api.get(path, params={"limit": limit}, headers=owner.headers)
        assert_problem(response, 422, "validation_error")
    good = await webhooks_api.get(path, params={"cursor": cursor}, headers=owner.headers)
    assert good.status_code == 200
    assert len(good.json()) == 2


# --- who may call what --------------------------------------------------------------------


def every_route(endpoint_id: str, attempt_id: uuid.UUID) -> list[tuple[str, str, Any]]:
    path = f"{ENDPOINTS}/{endpoint_id}"
    body = {"url": URL, "events": ["run.completed"]}
    return [
        ("POST", ENDPOINTS, body),
        ("GET", ENDPOINTS, None),
        ("GET", path, None),
        ("PATCH", path, {"description": "mine now"}),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/test", None),
        ("GET", f"{path}/deliveries", None),
        ("POST", REDELIVER.format(attempt_id), None),
        ("DELETE", path, None),
    ]


async def test_only_owners_and_admins_manage_webhooks(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
    new_member: NewMember,
) -> None:
    member = await new_member(tenant_id=owner.tenant_id, role="member")
    admin = await new_member(tenant_id=owner.tenant_id, role="admin")
    created = await create(webhooks_api, owner)
    _, attempt_ids = await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 1)

    for method, path, body in every_route(created["id"], attempt_ids[0]):
        refused = await webhooks_api.request(method, path, json=body, headers=member.headers)
        assert_problem(refused, 403, "auth.forbidden")
        anonymous = await webhooks_api.request(method, path, json=body)
        assert_problem(anonymous, 401, "auth.invalid_token")

    row = await stored_endpoint(sessionmaker, created["id"])
    assert (row.description, row.previous_secret) == (None, None)
    assert secret_box.open(row.id, row.secret) == created["secret"]
    assert len(await events_of(sessionmaker, owner.tenant_id)) == 1
    listed = await webhooks_api.get(ENDPOINTS, headers=owner.headers)
    assert [endpoint["id"] for endpoint in listed.json()] == [created["id"]]
    # An admin may do all of it.
    for method, path, body in every_route(created["id"], attempt_ids[0]):
        allowed = await webhooks_api.request(method, path, json=body, headers=admin.headers)
        assert allowed.is_success, (method, path, allowed.text)


async def test_another_tenant_finds_nothing(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
    new_member: NewMember,
) -> None:
    stranger = await new_member()
    created = await create(webhooks_api, owner)
    _, attempt_ids = await logged_delivery(webhooks_api, sessionmaker, owner, created["id"], 1)
    # The stranger has an endpoint and a log of their own.
    theirs = await create(webhooks_api, stranger)
    await logged_delivery(webhooks_api, sessionmaker, stranger, theirs["id"], 1)

    for method, path, body in every_route(created["id"], attempt_ids[0])[2:]:
        response = await webhooks_api.request(method, path, json=body, headers=stranger.headers)
        code = (
            "webhooks.delivery_not_found" if "redeliver" in path else "webhooks.endpoint_not_found"
        )
        assert_problem(response, 404, code)

    row = await stored_endpoint(sessionmaker, created["id"])
    assert (row.description, row.previous_secret) == (None, None)
    assert secret_box.open(row.id, row.secret) == created["secret"]
    assert len(await events_of(sessionmaker, owner.tenant_id)) == 1
    assert len(await deliveries_of(sessionmaker, tenant_id=owner.tenant_id)) == 1
    assert len(await deliveries_of(sessionmaker, tenant_id=stranger.tenant_id)) == 1
    listed = await webhooks_api.get(ENDPOINTS, headers=stranger.headers)
    assert [endpoint["id"] for endpoint in listed.json()] == [theirs["id"]]


# --- refused input ------------------------------------------------------------------------

INVALID_URL = "webhooks.invalid_url"
INVALID = "validation_error"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"events": ["run.completed"]}, INVALID, id="no-url"),
        pytest.param({"url": "", "events": ["run.completed"]}, INVALID, id="empty-url"),
        pytest.param(
            {"url": "http://example.com", "events": ["run.completed"]}, INVALID_URL, id="http"
        ),
        pytest.param(
            {"url": "ftp://example.com/in", "events": ["run.completed"]}, INVALID_URL, id="ftp"
        ),
        pytest.param(
            {"url": "https://user:pw@example.com/in", "events": ["run.completed"]},
            INVALID_URL,
            id="userinfo",
        ),
        pytest.param(
            {"url": "https://user@example.com/", "events": ["run.completed"]},
            INVALID_URL,
            id="user",
        ),
        pytest.param(
            {"url": "http://10.0.0.1/in", "events": ["run.completed"]},
            INVALID_URL,
            id="http-private",
        ),
        pytest.param(
            {"url": "https://10.0.0.1/in", "events": ["run.completed"]}, INVALID_URL, id="private"
        ),
        pytest.param(
            {"url": "https://127.0.0.1/in", "events": ["run.completed"]}, INVALID_URL, id="loopback"
        ),
        pytest.param(
            {"url": "https://169.254.169.254/latest", "events": ["run.completed"]},
            INVALID_URL,
            id="metadata",
        ),
        pytest.param(
            {"url": "https://[::1]/in", "events": ["run.completed"]},
            INVALID_URL,
            id="ipv6-loopback",
        ),
        pytest.param(
            {"url": "https://localhost/in", "events": ["run.completed"]},
            INVALID_URL,
            id="localhost",
        ),
        pytest.param(
            {"url": "https://example.com/" + "a" * 2048, "events": ["run.completed"]},
            INVALID,
            id="too-long",
        ),
        pytest.param({"url": URL, "events": ["run.exploded"]}, INVALID, id="unknown-event"),
        pytest.param({"url": URL, "events": []}, INVALID, id="no-events"),
        pytest.param({"url": URL}, INVALID, id="events-missing"),
        pytest.param(
            {"url": URL, "events": ["run.completed"], "description": "a\x00b"},
            INVALID,
            id="nul-description",
        ),
        pytest.param(
            {"url": URL, "events": ["run.completed"], "description": "d" * 501},
            INVALID,
            id="long-description",
        ),
    ],
)
async def test_a_refused_endpoint_is_not_created(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    owner: Member,
    body: dict[str, Any],
    code: str,
) -> None:
    response = await webhooks_api.post(ENDPOINTS, json=body, headers=owner.headers)

    problem = assert_problem(response, 422, code)
    assert problem["errors"], problem
    async with sessionmaker() as session:
        stored = await session.scalars(
            select(WebhookEndpoint.id).where(WebhookEndpoint.tenant_id == owner.tenant_id)
        )
        assert list(stored) == []


@pytest.fixture
async def two_endpoints_api(
    settings: Settings,
    sessionmaker: SessionMaker,
    committed_keys: KeySnapshot,
) -> AsyncIterator[AsyncClient]:
    """The app with WEBHOOKS_MAX_ENDPOINTS=2."""
    webhooks = settings.webhooks.model_copy(update={"max_endpoints": 2})
    app = create_app(settings.model_copy(update={"webhooks": webhooks}), job_sender=SentJobs())
    async with in_test_transaction(app, sessionmaker) as client:
        yield client


async def test_a_tenant_has_at_most_the_endpoint_limit(
    two_endpoints_api: AsyncClient, owner: Member, new_member: NewMember
) -> None:
    api = two_endpoints_api
    first = await create(api, owner)
    await create(api, owner)
    # Disabled ones count too.
    await api.patch(f"{ENDPOINTS}/{first['id']}", json={"enabled": False}, headers=owner.headers)

    third = await api.post(
        ENDPOINTS, json={"url": URL, "events": ["run.completed"]}, headers=owner.headers
    )

    assert_problem(third, 409, "webhooks.endpoint_limit")
    assert len((await api.get(ENDPOINTS, headers=owner.headers)).json()) == 2
    await create(api, await new_member())  # another tenant's count is its own
    assert (
        await api.delete(f"{ENDPOINTS}/{first['id']}", headers=owner.headers)
    ).status_code == 204
    await create(api, owner)
