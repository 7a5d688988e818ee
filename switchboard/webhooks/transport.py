"""One delivery attempt over HTTP: POST a body to an endpoint and say how it went.

The host is resolved here, every address it resolves to is checked (``guard.refusal``), and the
connection goes to the checked address itself: the URL sent to the HTTP client has the address
as its host, with the name kept in the ``Host`` header and, over https, in TLS (SNI and the
certificate check). Letting the client resolve the name again would let a DNS answer that
changes between the check and the connection (DNS rebinding) send the request to a refused
address.

Connections are kept alive per endpoint and address, in a bounded LRU of clients.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Literal

import httpx
import structlog

from switchboard.webhooks.guard import (
    InvalidWebhookUrlError,
    IPAddress,
    NameNotResolvedError,
    Resolver,
    Target,
    TargetRefusedError,
    parse_target,
    resolve,
    system_resolver,
)
from switchboard.webhooks.settings import WebhookSettings

log = structlog.get_logger("switchboard.webhooks")

USER_AGENT = "Switchboard-Webhooks/1"
# Below the 5 s idle timeout of Node's HTTP server, a common receiver, so a kept connection is
# not reused just as the receiver closes it.
KEEPALIVE_SECONDS = 4.0
DETAIL_MAX_CHARS = 200

AttemptError = Literal[
    "timeout",
    "connection_failed",
    "tls_failed",
    "address_not_allowed",
    "name_not_resolved",
    "redirect_not_followed",
    "http_status",
    "invalid_url",
]


@dataclass(frozen=True)
class Outcome:
    """How one attempt went. ``status_code`` is kept for ``http_status`` and
    ``redirect_not_followed``; ``detail`` is a short text for the attempt log, never the
    receiver's body."""

    status_code: int | None
    duration_ms: int
    error: str | None
    """One of ``AttemptError`` when the transport made the outcome."""
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class _Failed(Exception):
    def __init__(self, error: AttemptError, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.error: AttemptError = error
        self.detail = detail
        self.status_code = status_code


class _Unreachable(_Failed):
    """Nothing was sent: another address of the host may be tried."""


@dataclass(eq=False)
class _Slot:
    client: httpx.AsyncClient
    users: int = 0
    retired: bool = False


# Endpoint, scheme, host, port, address. The host is part of it because a kept TLS connection
# was verified for one name only.
_ClientKey = tuple[str, str, str, int, IPAddress]


class WebhookTransport:
    """Sends delivery attempts. One per process, closed with ``aclose``; ``post`` never raises
    for what the network or the receiver does."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._settings = settings
        self._allow_private = allow_private
        self._resolver: Resolver = resolver or system_resolver
        # One context for every client: building one loads the CA bundle.
        self._verify = httpx.create_ssl_context() if verify is True else verify
        self._timeout = httpx.Timeout(
            settings.timeout_seconds, connect=settings.connect_timeout_seconds
        )
        self._limits = httpx.Limits(
            max_connections=settings.endpoint_concurrency,
            max_keepalive_connections=settings.endpoint_concurrency,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )
        self._clients: OrderedDict[_ClientKey, _Slot] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def post(self, key: str, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POSTs ``body`` to ``url`` for the endpoint ``key`` (its id: clients are kept per
        endpoint)."""
        if self._closed:
            raise RuntimeError("the webhook transport is closed")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                status_code = await self._attempt(key, url, body, headers)
        except _Failed as failed:
            return _outcome(started, failed.status_code, failed.error, failed.detail)
        except TimeoutError:
            detail = f"no complete answer within {self._settings.timeout_seconds:g} s"
            return _outcome(started, None, "timeout", detail)
        return _outcome(started, status_code, None, None)

    async def aclose(self) -> None:
        """Closes every kept client; clients of attempts still running close when they end."""
        self._closed = True
        while self._clients:
            _, slot = self._clients.popitem(last=False)
            self._retire(slot)
        if self._closing:
            await asyncio.gather(*self._closing)

    async def _attempt(self, key: str, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        try:
            target = parse_target(url)
        except InvalidWebhookUrlError as exc:
            raise _Failed("invalid_url", str(exc)) from exc
        try:
            addresses = await resolve(
                target, allow_private=self._allow_private, resolver=self._resolver
            )
        except TargetRefusedError as exc:
            log.warning(
                "webhooks.target_refused",
                key=key,
                host=target.host,
                address=str(exc.address),
                reason=exc.reason,
            )
            raise _Failed("address_not_allowed", str(exc)) from exc
        except NameNotResolvedError as exc:
            raise _Failed("name_not_resolved", str(exc)) from exc
        for address in addresses[:-1]:
            try:
                return await self._send(key, target, address, body, headers)
            except _Unreachable:
                continue
        return await self._send(key, target, addresses[-1], body, headers)

    async def _send(
        self,
        key: str,
        target: Target,
        address: IPAddress,
        body: bytes,
        headers: Mapping[str, str],
    ) -> int:
        client_key: _ClientKey = (key, target.scheme, target.host, target.port, address)
        request_headers = httpx.Headers(headers)
        request_headers["Host"] = target.netloc
        slot = self._acquire(client_key)
        broken = True
        try:
            request = slot.client.build_request(
                "POST",
                _address_url(target, address),
                content=body,
                headers=request_headers,
                extensions=_tls_name(target),
            )
            response = await self._exchange(slot.client, request, address)
            broken = False
        finally:
            self._release(client_key, slot, broken=broken)
        status_code = response.status_code
        if 300 <= status_code < 400:
            location = response.headers.get("location")
            detail = f"HTTP {status_code} to {location}" if location else f"HTTP {status_code}"
            raise _Failed("redirect_not_followed", _shorten(detail), status_code=status_code)
        if not 200 <= status_code < 300:
            raise _Failed("http_status", f"HTTP {status_code}", status_code=status_code)
        return status_code

    async def _exchange(
        self, client: httpx.AsyncClient, request: httpx.Request, address: IPAddress
    ) -> httpx.Response:
        """Sends the request and reads at most ``response_max_bytes`` of the answer, which is
        dropped; a longer answer closes the connection instead of being read to its end."""
        limit = self._settings.response_max_bytes
        try:
            response = await client.send(request, stream=True)
            try:
                received = 0
                if limit > 0:
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received >= limit:
                            break
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise _Failed("timeout", _describe(address, exc)) from exc
        except (httpx.TransportError, OSError) as exc:
            tls = _tls_error(exc)
            if tls is not None:
                raise _Failed("tls_failed", _describe(address, tls)) from exc
            if isinstance(exc, httpx.ConnectError):
                raise _Unreachable("connection_failed", _describe(address, exc)) from exc
            raise _Failed("connection_failed", _describe(address, exc)) from exc
        return response

    def _acquire(self, key: _ClientKey) -> _Slot:
        slot = self._clients.get(key)
        if slot is None:
            slot = _Slot(self._new_client())
            self._clients[key] = slot
            while len(self._clients) > self._settings.clients_per_worker:
                _, evicted = self._clients.popitem(last=False)
                self._retire(evicted)
        else:
            self._clients.move_to_end(key)
        slot.users += 1
        return slot

    def _release(self, key: _ClientKey, slot: _Slot, *, broken: bool) -> None:
        slot.users -= 1
        if broken and self._clients.get(key) is slot:
            del self._clients[key]
            slot.retired = True
        if slot.retired and slot.users == 0:
            self._close_later(slot.client)

    def _retire(self, slot: _Slot) -> None:
        slot.retired = True
        if slot.users == 0:
            self._close_later(slot.client)

    def _close_later(self, client: httpx.AsyncClient) -> None:
        task = asyncio.get_running_loop().create_task(_close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self._verify,
            timeout=self._timeout,
            limits=self._limits,
            follow_redirects=False,
            # No proxy or .netrc from the environment: the request goes to the checked address.
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )


async def _close(client: httpx.AsyncClient) -> None:
    try:
        await client.aclose()
    except Exception as exc:
        log.warning("webhooks.client_close_failed", error=_shorten(str(exc)))


def _address_url(target: Target, address: IPAddress) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{target.scheme}://{host}:{target.port}{target.path}"


def _tls_name(target: Target) -> dict[str, str]:
    # httpcore verifies the certificate against, and sends as SNI, this name instead of the
    # URL's host (the address).
    if target.scheme == "https" and target.address is None:
        return {"sni_hostname": target.host}
    return {}


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx error (httpx wraps httpcore's, which wraps the ssl one)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe(address: IPAddress, exc: BaseException) -> str:
    return _shorten(f"{address}: {str(exc) or type(exc).__name__}")


def _shorten(text: str) -> str:
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 3] + "..."


def _outcome(
    started: float, status_code: int | None, error: AttemptError | None, detail: str | None
) -> Outcome:
    duration_ms = round((time.perf_counter() - started) * 1000)
    return Outcome(status_code=status_code, duration_ms=duration_ms, error=error, detail=detail)
