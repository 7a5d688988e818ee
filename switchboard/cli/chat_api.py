"""The API as the terminal client calls it: sign-in, refresh, requests and resumable run streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from switchboard.cli.sse import Event, parse_events

TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled"})
# Reconnects in a row without an event in between before a stream counts as lost.
STREAM_RETRIES = 5
BACKOFF_SECONDS = (0.25, 0.5, 1.0, 2.0, 4.0)
# The API pings an idle stream at least every 15 s: three missed pings mean the connection died.
STREAM_READ_TIMEOUT = 45.0
# An access token is refreshed this long before it expires, so no request carries a stale one.
REFRESH_MARGIN_SECONDS = 30.0


class ProblemError(Exception):
    """The API refused a request with a problem document (or a bare error status)."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class ConnectionLost(Exception):
    """The API could not be reached, or a run's stream could not be followed to its end."""


def problem_of(response: httpx.Response) -> ProblemError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    retry_after = response.headers.get("retry-after", "")
    return ProblemError(
        response.status_code,
        str(body.get("code") or f"http.{response.status_code}"),
        str(body.get("detail") or body.get("title") or response.reason_phrase),
        float(retry_after) if retry_after.isdigit() else None,
    )


class Api:
    """One signed-in session: adds the Bearer token to every request and refreshes it with the
    refresh token (when the session has one) shortly before it expires or when it is refused."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        access_token: str,
        refresh_token: str | None = None,
        expires_in: float | None = None,
    ) -> None:
        self.http = http
        self._access_token = access_token
        self._refresh_token = refresh_token
        self._refresh_at = _refresh_at(expires_in)
        # A refresh token is spent by its first use: two refreshes at once would revoke the
        # session, so they take turns.
        self._refreshing = asyncio.Lock()

    @classmethod
    async def sign_in(
        cls, http: httpx.AsyncClient, email: str, password: str, tenant_id: str | None = None
    ) -> Api:
        body: dict[str, str] = {"email": email, "password": password}
        if tenant_id:
            body["tenant_id"] = tenant_id
        response = await _send(http, "POST", "/api/v1/auth/login", json=body)
        if response.status_code != 200:
            raise problem_of(response)
        pair = response.json()
        return cls(http, pair["access_token"], pair["refresh_token"], pair["expires_in"])

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """The answer to a request with the Bearer token; ``ProblemError`` for a 4xx or 5xx."""
        due = self._refresh_at is not None and time.monotonic() >= self._refresh_at
        if self._refresh_token and due:
            await self._refresh(self._access_token)
        sent_with = self._access_token
        response = await _send(
            self.http, method, path, json=json, params=params, headers=self._auth()
        )
        if response.status_code == 401 and self._refresh_token:
            await self._refresh(sent_with)
            response = await _send(
                self.http, method, path, json=json, params=params, headers=self._auth()
            )
        if response.status_code >= 400:
            raise problem_of(response)
        return response

    async def _refresh(self, stale: str) -> None:
        async with self._refreshing:
            if self._access_token != stale or not self._refresh_token:
                return  # another request refreshed it meanwhile
            response = await _send(
                self.http,
                "POST",
                "/api/v1/auth/refresh",
                json={"refresh_token": self._refresh_token},
            )
            if response.status_code != 200:
                raise problem_of(response)
            pair = response.json()
            self._access_token = pair["access_token"]
            self._refresh_token = pair["refresh_token"]
            self._refresh_at = _refresh_at(pair["expires_in"])

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token}"}

    async def follow(self, run_id: str, stream_url: str | None = None) -> AsyncIterator[Event]:
        """The run's events, each once and in order, up to its terminal event.

        ``stream_url`` (a path with a ticket, as ``POST /chat`` gives it) opens the stream;
        without it the Bearer token does. A dropped connection, or a stream that ends without
        a terminal event, is resumed after the last event seen (``Last-Event-ID``), with a
        fresh ticket when the old one is refused, backing off between attempts.
        ``ConnectionLost`` once ``STREAM_RETRIES`` attempts in a row brought nothing.
        """
        url = stream_url or f"/api/v1/runs/{run_id}/stream"
        last_id = 0
        failures = 0
        reason = "the stream ended early"
        while True:
            wait: float | None = None
            headers = {"Accept": "text/event-stream"}
            if stream_url is None:
                headers.update(self._auth())
            if last_id:
                headers["Last-Event-ID"] = str(last_id)
            try:
                async with self.http.stream(
                    "GET",
                    url,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT),
                ) as response:
                    if response.status_code == 200:
                        async for event in parse_events(response.aiter_lines()):
                            if event.event == "stream.error":
                                if event.data.get("code") != "stream_failed":
                                    raise ConnectionLost(
                                        str(event.data.get("message", "the stream failed"))
                                    )
                                reason = "the stream failed"
                                break
                            if event.id is not None:
                                if event.id <= last_id:
                                    continue
                                last_id = event.id
                            failures = 0
                            yield event
                            if event.event in TERMINAL:
                                return
                        else:
                            reason = "the stream ended before the run did"
                    else:
                        await response.aread()
                        problem = problem_of(response)
                        if stream_url is not None and (
                            problem.status == 401 or problem.code == "runs.ticket_streams_exceeded"
                        ):
                            # The ticket expired, or its streams are not yet given back.
                            stream_url = url = await self.stream_url(run_id)
                            reason = problem.code
                        elif problem.status == 401 and stream_url is None and self._refresh_token:
                            await self._refresh(headers["Authorization"].removeprefix("Bearer "))
                            reason = problem.code
                        elif problem.status in (429, 503):
                            wait = problem.retry_after
                            reason = problem.code
                        else:
                            raise problem
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failures += 1
            if failures > STREAM_RETRIES:
                raise ConnectionLost(f"lost the stream of run {run_id}: {reason}")
            await asyncio.sleep(wait or BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])

    async def stream_url(self, run_id: str) -> str:
        """A stream URL with a fresh ticket."""
        response = await self.request("POST", f"/api/v1/runs/{run_id}/stream-ticket")
        return str(response.json()["stream_url"])


def _refresh_at(expires_in: float | None) -> float | None:
    if expires_in is None:
        return None
    return time.monotonic() + max(float(expires_in) - REFRESH_MARGIN_SECONDS, 0.0)


async def _send(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return await http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise ConnectionLost(f"cannot reach {http.base_url}: {exc or type(exc).__name__}") from exc
