"""One delivery attempt over real sockets, against the receivers of tests/webhooks/receivers.py."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from switchboard.webhooks.guard import Resolver, check_url
from switchboard.webhooks.settings import WebhookSettings
from switchboard.webhooks.transport import USER_AGENT, Outcome, WebhookTransport
from tests.webhooks.receivers import Receiver, Reply, StubResolver, TLSReceiver

BODY = b'{"type":"webhook.test","timestamp":"2026-12-03T18:00:00Z","data":{}}'
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1"}


def webhook_settings(**changes: Any) -> WebhookSettings:
    """Short timeouts, so the tests that wait for one stay fast."""
    return WebhookSettings.model_validate(
        {"timeout_seconds": 2.0, "connect_timeout_seconds": 1.0, **changes}
    )


# Loaded once: a transport left to verify=True loads the CA bundle, which adds up over the tests.
SYSTEM_TRUST = ssl.create_default_context()


def new_transport(
    *,
    allow_private: bool = True,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext = SYSTEM_TRUST,
    **changes: Any,
) -> WebhookTransport:
    return WebhookTransport(
        webhook_settings(**changes), allow_private=allow_private, resolver=resolver, verify=verify
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def tls_receiver() -> Iterator[TLSReceiver]:
    with TLSReceiver() as server:
        yield server


@pytest.fixture
async def transport() -> AsyncIterator[WebhookTransport]:
    sender = new_transport()
    yield sender
    await sender.aclose()


async def eventually_equal(probe: Any, expected: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while probe() != expected:
        assert time.monotonic() < deadline, f"{probe()} != {expected} after {timeout}s"
        await asyncio.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_2xx_answer_is_ok(receiver: Receiver, transport: WebhookTransport) -> None:
    outcome = await transport.post("ep_1", receiver.url + "/hooks?tenant=1", BODY, HEADERS)

    assert outcome == Outcome(status_code=200, duration_ms=outcome.duration_ms, error=None)
    assert outcome.ok
    assert outcome.duration_ms >= 0
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hooks?tenant=1", BODY)
    assert request.header("content-type") == "application/json"
    assert request.header("webhook-id") == "msg_1"
    assert request.header("user-agent") == USER_AGENT == "Switchboard-Webhooks/1"
    assert request.header("host") == f"127.0.0.1:{receiver.port}"
    assert request.header("content-length") == str(len(BODY))


@pytest.mark.parametrize("status", [201, 202, 204, 299])
async def test_every_2xx_is_ok(
    receiver: Receiver, transport: WebhookTransport, status: int
) -> None:
    receiver.script(Reply.status(status))
    outcome = await transport.post("ep_1", receiver.url, BODY, HEADERS)
    assert (outcome.ok, outcome.status_code, outcome.error) == (True, status, None)


async def test_a_given_user_agent_is_kept(receiver: Receiver, transport: WebhookTransport) -> None:
    await transport.post("ep_1", receiver.url, BODY, {"user-agent": "Custom/2"})
    assert receiver.requests[0].header("user-agent") == "Custom/2"


async def test_a_given_host_header_is_replaced_not_repeated(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    await transport.post("ep_1", receiver.url, BODY, {"host": "elsewhere.example"})
    hosts = [value for name, value in receiver.requests[0].headers if name.lower() == "host"]
    assert hosts == [f"127.0.0.1:{receiver.port}"]


@pytest.mark.parametrize("status", [400, 404, 410, 429, 500, 503])
async def test_other_statuses_are_http_status_with_the_code_kept(
    receiver: Receiver, transport: WebhookTransport, status: int
) -> None:
    receiver.script(Reply.status(status, b"the receiver's own error page, never logged"))
    outcome = await transport.post("ep_1", receiver.url, BODY, HEADERS)
    assert (outcome.ok, outcome.status_code, outcome.error) == (False, status, "http_status")
    assert outcome.detail == f"HTTP {status}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(
    receiver: Receiver, transport: WebhookTransport, status: int
) -> None:
    receiver.script(Reply.redirect(receiver.url + "/elsewhere", status))
    outcome = await transport.post("ep_1", receiver.url + "/hook", BODY, HEADERS)

    assert (outcome.ok, outcome.status_code, outcome.error) == (
        False,
        status,
        "redirect_not_followed",
    )
    assert outcome.detail == f"HTTP {status} to {receiver.url}/elsewhere"
    await asyncio.sleep(0.05)  # time for a followed redirect to arrive, if one were sent
    assert [request.path for request in receiver.requests] == ["/hook"]


async def test_a_receiver_that_does_not_answer_times_out(receiver: Receiver) -> None:
    receiver.script(Reply.hang())
    sender = new_transport(timeout_seconds=0.5)
    started = time.monotonic()
    try:
        outcome = await sender.post("ep_1", receiver.url, BODY, HEADERS)
    finally:
        await sender.aclose()

    assert (outcome.ok, outcome.status_code, outcome.error) == (False, None, "timeout")
    assert time.monotonic() - started < 5
    assert outcome.duration_ms >= 400
    [exchange] = receiver.wait_for_exchanges(1)
    assert exchange.client_left


async def test_the_duration_covers_the_wait_for_the_answer(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.script(Reply.hang(0.3))
    outcome = await transport.post("ep_1", receiver.url, BODY, HEADERS)
    assert outcome.ok
    assert outcome.duration_ms >= 290


async def test_connecting_is_bounded_by_the_connect_timeout() -> None:
    # A listener that never accepts: TCP connects (the backlog), the TLS handshake never ends.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        sender = new_transport(connect_timeout_seconds=0.3, timeout_seconds=3.0)
        try:
            outcome = await sender.post("ep_1", f"https://127.0.0.1:{port}/", BODY, HEADERS)
        finally:
            await sender.aclose()

    assert (outcome.status_code, outcome.error) == (None, "timeout")
    assert outcome.duration_ms < 2500


async def test_with_no_response_bytes_allowed_only_the_status_is_read(
    receiver: Receiver,
) -> None:
    receiver.script(Reply.status(200, b"ignored"), Reply.status(500, b"ignored"))
    sender = new_transport(response_max_bytes=0)
    try:
        ok = await sender.post("ep_1", receiver.url, BODY, HEADERS)
        failed = await sender.post("ep_1", receiver.url, BODY, HEADERS)
    finally:
        await sender.aclose()
    assert (ok.ok, ok.status_code) == (True, 200)
    assert (failed.error, failed.status_code) == ("http_status", 500)


async def test_a_closed_port_is_connection_failed(transport: WebhookTransport) -> None:
    port = closed_port()
    outcome = await transport.post("ep_1", f"http://127.0.0.1:{port}/", BODY, HEADERS)
    assert (outcome.ok, outcome.status_code, outcome.error) == (False, None, "connection_failed")
    assert outcome.detail is not None
    assert outcome.detail.startswith("127.0.0.1: ")


async def test_a_connection_closed_without_an_answer_is_connection_failed_then_replaced(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    assert (await transport.post("ep_1", receiver.url, BODY, HEADERS)).ok
    receiver.script(Reply.dropped())
    dropped = await transport.post("ep_1", receiver.url, BODY, HEADERS)
    assert (dropped.status_code, dropped.error) == (None, "connection_failed")

    assert (await transport.post("ep_1", receiver.url, BODY, HEADERS)).ok
    assert [request.connection for request in receiver.requests] == [1, 1, 2]


async def test_a_big_answer_is_read_only_up_to_the_limit(receiver: Receiver) -> None:
    size = 64 * 1024 * 1024
    receiver.script(Reply.big(size))
    sender = new_transport(response_max_bytes=4096)
    try:
        outcome = await sender.post("ep_1", receiver.url, BODY, HEADERS)
    finally:
        await sender.aclose()

    assert (outcome.ok, outcome.status_code) == (True, 200)
    [exchange] = receiver.wait_for_exchanges(1)
    assert exchange.client_left
    assert exchange.sent < size


async def test_a_short_answer_is_read_to_its_end_and_the_connection_kept(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.script(Reply.status(200, b"x" * 1000), Reply.status(200, b"y" * 3000))
    for _ in range(3):
        assert (await transport.post("ep_1", receiver.url, BODY, HEADERS)).ok
    assert receiver.connections == 1


async def test_a_loopback_url_is_refused_without_allow_private(receiver: Receiver) -> None:
    sender = new_transport(allow_private=False)
    try:
        outcome = await sender.post("ep_1", receiver.url + "/hook", BODY, HEADERS)
        mapped = await sender.post(
            "ep_1", f"http://[::ffff:127.0.0.1]:{receiver.port}/", BODY, HEADERS
        )
    finally:
        await sender.aclose()

    assert (outcome.ok, outcome.status_code, outcome.error) == (
        False,
        None,
        "address_not_allowed",
    )
    assert outcome.detail == "the address 127.0.0.1 is loopback"
    assert mapped.error == "address_not_allowed"
    assert receiver.connections == 0
    assert receiver.requests == []


async def test_a_name_that_resolves_to_a_refused_address_is_refused_when_sent(
    receiver: Receiver,
) -> None:
    # Saved, the name passes: nothing but its addresses at send time can tell.
    assert check_url("https://rebind.example/hook", allow_private=False)
    resolver = StubResolver(
        {"rebind.example": ["127.0.0.1"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}
    )
    sender = new_transport(allow_private=False, resolver=resolver)
    try:
        rebound = await sender.post(
            "ep_1", f"http://rebind.example:{receiver.port}/hook", BODY, HEADERS
        )
        mixed = await sender.post("ep_1", f"http://mixed.example:{receiver.port}/", BODY, HEADERS)
    finally:
        await sender.aclose()

    assert (rebound.error, rebound.detail) == (
        "address_not_allowed",
        "the address 127.0.0.1 is loopback",
    )
    assert mixed.error == "address_not_allowed"
    assert resolver.calls == [("rebind.example", receiver.port), ("mixed.example", receiver.port)]
    assert receiver.connections == 0


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
    ],
)
async def test_names_resolving_to_internal_addresses_are_refused_before_connecting(
    address: str, reason: str
) -> None:
    resolver = StubResolver({"internal.example": [address]})
    sender = new_transport(allow_private=False, resolver=resolver)
    try:
        outcome = await sender.post("ep_1", "https://internal.example/hook", BODY, HEADERS)
    finally:
        await sender.aclose()
    assert outcome.error == "address_not_allowed"
    assert outcome.status_code is None
    assert reason in (outcome.detail or ""), outcome.detail


async def test_the_request_goes_to_the_resolved_address_with_the_name_as_host(
    receiver: Receiver,
) -> None:
    # The system cannot resolve hooks.example: only our resolver's answer can be reached.
    resolver = StubResolver({"hooks.example": ["127.0.0.1"]})
    sender = new_transport(resolver=resolver)
    try:
        outcome = await sender.post(
            "ep_1", f"http://hooks.example:{receiver.port}/hook", BODY, HEADERS
        )
    finally:
        await sender.aclose()

    assert outcome.ok
    [request] = receiver.requests
    assert request.header("host") == f"hooks.example:{receiver.port}"
    assert request.path == "/hook"
    assert resolver.calls == [("hooks.example", receiver.port)]


async def test_the_next_address_is_tried_when_one_refuses_the_connection(
    receiver: Receiver,
) -> None:
    # The receiver listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    resolver = StubResolver({"hooks.example": ["127.0.0.2", "127.0.0.1"]})
    sender = new_transport(resolver=resolver)
    try:
        outcome = await sender.post("ep_1", f"http://hooks.example:{receiver.port}/", BODY, HEADERS)
    finally:
        await sender.aclose()
    assert outcome.ok
    assert len(receiver.requests) == 1


async def test_https_goes_to_the_address_with_the_name_for_sni_and_the_certificate(
    tls_receiver: TLSReceiver,
) -> None:
    resolver = StubResolver({"localhost": ["127.0.0.1"]})
    sender = new_transport(resolver=resolver, verify=tls_receiver.client_context)
    try:
        by_name = await sender.post("ep_1", tls_receiver.url + "/hook", BODY, HEADERS)
        by_address = await sender.post("ep_1", tls_receiver.ip_url + "/hook", BODY, HEADERS)
    finally:
        await sender.aclose()

    assert by_name.ok
    assert by_address.ok
    named, addressed = tls_receiver.requests
    assert (named.server_name, named.header("host")) == (
        "localhost",
        f"localhost:{tls_receiver.port}",
    )
    assert (addressed.server_name, addressed.header("host")) == (
        None,
        f"127.0.0.1:{tls_receiver.port}",
    )
    assert resolver.calls == [("localhost", tls_receiver.port)]


async def test_the_certificate_is_checked_against_the_name_not_the_address(
    tls_receiver: TLSReceiver,
) -> None:
    # The certificate covers 127.0.0.1, where the request goes, but not the name in the URL.
    resolver = StubResolver({"hooks.example": ["127.0.0.1"]})
    sender = new_transport(resolver=resolver, verify=tls_receiver.client_context)
    try:
        outcome = await sender.post(
            "ep_1", f"https://hooks.example:{tls_receiver.port}/", BODY, HEADERS
        )
    finally:
        await sender.aclose()

    assert (outcome.status_code, outcome.error) == (None, "tls_failed")
    assert outcome.detail is not None
    assert "hooks.example" in outcome.detail
    assert tls_receiver.requests == []


async def test_a_certificate_from_an_unknown_ca_is_tls_failed(tls_receiver: TLSReceiver) -> None:
    resolver = StubResolver({"localhost": ["127.0.0.1"]})
    # Left to its default, the transport trusts the usual public CAs, not this one.
    sender = WebhookTransport(webhook_settings(), allow_private=True, resolver=resolver)
    try:
        outcome = await sender.post("ep_1", tls_receiver.url, BODY, HEADERS)
    finally:
        await sender.aclose()

    assert (outcome.status_code, outcome.error) == (None, "tls_failed")
    assert outcome.detail is not None
    assert "certificate verify failed" in outcome.detail
    assert tls_receiver.requests == []


async def test_plain_http_to_a_tls_receiver_is_not_ok(
    tls_receiver: TLSReceiver, transport: WebhookTransport
) -> None:
    outcome = await transport.post("ep_1", f"http://127.0.0.1:{tls_receiver.port}/", BODY, {})
    assert outcome.error == "connection_failed"


async def test_attempts_to_one_endpoint_share_a_kept_connection(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    assert (await transport.post("ep_1", receiver.url + "/a", BODY, HEADERS)).ok
    assert (await transport.post("ep_1", receiver.url + "/b", BODY, HEADERS)).ok
    assert receiver.connections == 1
    assert [request.connection for request in receiver.requests] == [1, 1]

    assert (await transport.post("ep_2", receiver.url + "/a", BODY, HEADERS)).ok
    assert receiver.connections == 2


async def test_concurrent_attempts_to_one_endpoint_are_limited(receiver: Receiver) -> None:
    receiver.default = Reply.hang(0.2)
    sender = new_transport(endpoint_concurrency=2)
    try:
        outcomes = await asyncio.gather(
            *(sender.post("ep_1", receiver.url, BODY, HEADERS) for _ in range(4))
        )
    finally:
        await sender.aclose()
    assert all(outcome.ok for outcome in outcomes)
    assert receiver.connections == 2


async def test_the_least_recently_used_client_is_closed_when_there_are_too_many(
    receiver: Receiver,
) -> None:
    sender = new_transport(clients_per_worker=2)
    try:
        for key in ("ep_1", "ep_2", "ep_1", "ep_3", "ep_2"):
            assert (await sender.post(key, receiver.url + "/" + key, BODY, HEADERS)).ok
        # ep_3 evicted ep_2 (ep_1 was used since), then ep_2 came back and evicted ep_1.
        assert [request.connection for request in receiver.requests] == [1, 2, 1, 3, 4]
        await eventually_equal(lambda: receiver.open_connections, 2)
    finally:
        await sender.aclose()
    await eventually_equal(lambda: receiver.open_connections, 0)


async def test_aclose_closes_the_kept_connections(receiver: Receiver) -> None:
    sender = new_transport()
    for key in ("ep_1", "ep_2", "ep_3"):
        assert (await sender.post(key, receiver.url, BODY, HEADERS)).ok
    assert receiver.open_connections == 3
    await sender.aclose()
    await eventually_equal(lambda: receiver.open_connections, 0)
    with pytest.raises(RuntimeError):
        await sender.post("ep_1", receiver.url, BODY, HEADERS)


async def test_cookies_set_by_a_receiver_are_not_sent_back(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.script(Reply.status(200, headers={"Set-Cookie": "session=abc; Path=/"}))
    await transport.post("ep_1", receiver.url, BODY, HEADERS)
    await transport.post("ep_1", receiver.url, BODY, HEADERS)
    assert receiver.requests[1].header("cookie") is None


async def test_a_cancelled_attempt_is_cancelled(receiver: Receiver) -> None:
    receiver.script(Reply.hang())
    sender = new_transport()
    try:
        attempt = asyncio.ensure_future(sender.post("ep_1", receiver.url, BODY, HEADERS))
        await receiver.arrived(1)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        # The connection was dropped with its client.
        await eventually_equal(lambda: receiver.open_connections, 0)
        assert (await sender.post("ep_1", receiver.url, BODY, HEADERS)).ok
    finally:
        await sender.aclose()


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://example.com/", "https://"),
        ("http://0x7f.1/", "IP address (127.0.0.1)"),
        ("http://user:pass@example.com/", "user name"),
        ("not a url", "spaces"),
    ],
)
async def test_an_invalid_url_is_invalid_url(
    transport: WebhookTransport, url: str, detail: str
) -> None:
    outcome = await transport.post("ep_1", url, BODY, HEADERS)
    assert (outcome.status_code, outcome.error) == (None, "invalid_url")
    assert outcome.detail is not None
    assert detail in outcome.detail


@pytest.mark.parametrize("answers", [{}, {"gone.example": []}])
async def test_a_name_that_does_not_resolve_is_name_not_resolved(
    answers: dict[str, list[str]],
) -> None:
    sender = new_transport(allow_private=False, resolver=StubResolver(answers))
    try:
        outcome = await sender.post("ep_1", "https://gone.example/hook", BODY, HEADERS)
    finally:
        await sender.aclose()
    assert (outcome.status_code, outcome.error) == (None, "name_not_resolved")
    assert outcome.detail == "the name gone.example did not resolve to an address"


async def test_a_resolver_that_does_not_answer_times_out() -> None:
    async def stuck(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return []

    sender = new_transport(timeout_seconds=0.3, allow_private=False, resolver=stuck)
    try:
        outcome = await sender.post("ep_1", "https://slow.example/hook", BODY, HEADERS)
    finally:
        await sender.aclose()
    assert outcome.error == "timeout"
