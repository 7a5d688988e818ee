"""`switchboard chat` as a real process against a real API process and runs worker."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from rich.console import Console

from switchboard.auth.keyring import KeySnapshot
from switchboard.cli.chat import (
    EXIT_CANCELLED,
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    LiveView,
)
from switchboard.cli.chat_api import Api
from switchboard.cli.sse import Event, parse_events
from tests.support.worker import api_process, runs_worker_process

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long enough passphrase"
# Slow enough to interrupt a reply mid-way. A run still going after RUNS_MAX_SECONDS fails with
# `timeout`, which is how these tests make a run fail; it is also how long a Ctrl-C has to
# cancel LONG, whose reply takes 16 s.
TOKEN_DELAY_MS = 40
MAX_SECONDS = 6
LONG = " ".join(f"word{n}" for n in range(400))
WAIT = 60.0
CHAT = (sys.executable, "-m", "switchboard.cli", "chat")


@pytest.fixture(scope="module")
def api_server(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API and a runs worker on the offline model, started side by side."""
    worker_dir = tmp_path_factory.mktemp("chat-worker")
    log = tmp_path_factory.mktemp("chat-api") / "api.log"
    worker_env = {
        "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
        "RUNS_MAX_SECONDS": str(MAX_SECONDS),
    }
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        worker = pool.submit(stack.enter_context, runs_worker_process(worker_dir, env=worker_env))
        api = pool.submit(stack.enter_context, api_process(log))
        worker.result()
        yield api.result()


@dataclass
class User:
    email: str
    headers: dict[str, str]
    token: str


async def sign_up(api: AsyncClient) -> User:
    email = f"chat-{uuid.uuid4().hex[:10]}@example.com"
    registered = await api.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "T"}
    )
    assert registered.status_code == 201, registered.text
    pair = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = pair.json()["access_token"]
    return User(email, {"Authorization": f"Bearer {token}"}, token)


@pytest.fixture
async def user(api: AsyncClient) -> User:
    return await sign_up(api)


def password_env(user: User) -> dict[str, str]:
    return {"SWITCHBOARD_EMAIL": user.email, "SWITCHBOARD_PASSWORD": PASSWORD}


async def start(url: str, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """`python -m switchboard.cli chat ...` with pipes for stdin, stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        *CHAT,
        *args,
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_URL": url, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, stdin: bytes = b"") -> tuple[str, str]:
    out, err = await asyncio.wait_for(process.communicate(stdin), WAIT)
    return out.decode(), err.decode()


async def read_until(
    stream: asyncio.StreamReader | None, pattern: str
) -> tuple[str, re.Match[str]]:
    """What ``stream`` sent until ``pattern`` matched it."""
    assert stream is not None
    seen = ""
    while not (found := re.search(pattern, seen)):
        chunk = await asyncio.wait_for(stream.read(4096), WAIT)
        assert chunk, f"the stream ended before {pattern!r}: {seen!r}"
        seen += chunk.decode()
    return seen, found


async def messages(api: AsyncClient, user: User) -> list[dict[str, Any]]:
    """The messages of the user's only conversation."""
    conversations = (await api.get("/api/v1/conversations", headers=user.headers)).json()
    assert len(conversations["items"]) == 1
    conversation = conversations["items"][0]["id"]
    page = await api.get(f"/api/v1/conversations/{conversation}/messages", headers=user.headers)
    return list(page.json()["items"])


async def outcome(api: AsyncClient, user: User, run_id: str) -> str:
    """The run's terminal event, awaited on its stream; then its stored status."""
    async with api.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=user.headers) as stream:
        async for event in parse_events(stream.aiter_lines()):
            if event.event in ("run.completed", "run.failed", "run.cancelled"):
                break
    return str((await api.get(f"/api/v1/runs/{run_id}", headers=user.headers)).json()["status"])


async def test_a_message_prints_the_stored_reply_and_exits_0(
    api_server: str, api: AsyncClient, user: User
) -> None:
    process = await start(api_server, password_env(user), "--message", "please check my invoice")
    out, err = await finish(process)

    assert process.returncode == EXIT_COMPLETED, err
    stored = await messages(api, user)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["agent"] == "billing"
    assert out == stored[1]["content"] + "\n"
    assert "handed off to billing" in err


async def test_a_failed_run_and_a_refused_request_exit_with_their_codes(
    api_server: str, api: AsyncClient, user: User
) -> None:
    token = {"SWITCHBOARD_TOKEN": user.token}
    failing = await start(api_server, token, "--message", LONG, "--json")
    refused = await start(api_server, token, "--message", "hello", "--agent", "nobody")
    (failed_out, failed_err), (refused_out, refused_err) = await asyncio.gather(
        finish(failing), finish(refused)
    )

    assert failing.returncode == EXIT_FAILED, failed_err
    assert re.search(r"run \S+ failed: timeout", failed_err), failed_err
    events = [json.loads(line) for line in failed_out.splitlines()]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "run.queued"
    deltas = [e["data"]["delta"] for e in events if e["event"] == "message.delta"]
    assert deltas[:2] == ["word0 ", "word1 "]  # what was streamed before the run stopped
    assert events[-1]["event"] == "run.failed"
    assert events[-1]["data"]["error"]["code"] == "timeout"
    assert await outcome(api, user, events[-1]["data"]["run_id"]) == "failed"
    assert refused.returncode == EXIT_REFUSED, refused_err
    assert "422 agent.unknown" in refused_err
    assert refused_out == ""


async def test_ctrl_c_cancels_the_run_keeping_what_was_said(
    api_server: str, api: AsyncClient, user: User
) -> None:
    process = await start(api_server, password_env(user), "--message", LONG)
    first, _ = await read_until(process.stdout, r"word1 ")
    process.send_signal(signal.SIGINT)
    rest, err = await finish(process)

    assert process.returncode == EXIT_CANCELLED, err
    found = re.search(r"run (\S+) cancelled", err)
    assert found, err
    assert await outcome(api, user, found[1]) == "cancelled"
    stored = await messages(api, user)
    assert stored[1]["incomplete"] is True
    assert first + rest == stored[1]["content"] + "\n"
    assert len(stored[1]["content"].split()) < len(LONG.split())


async def test_a_second_ctrl_c_quits_while_the_cancel_is_awaited(
    api_server: str, api: AsyncClient, user: User
) -> None:
    process = await start(api_server, password_env(user), "--new")
    assert process.stdin is not None
    process.stdin.write(f"{LONG}\n".encode())
    await read_until(process.stdout, r"word1 ")
    process.send_signal(signal.SIGINT)
    _, found = await read_until(process.stderr, r"cancelling run (\S+)…")
    process.send_signal(signal.SIGINT)
    _, err = await finish(process)

    assert process.returncode == EXIT_INTERRUPTED, err
    assert await outcome(api, user, found[1]) == "cancelled"


async def test_an_approval_is_asked_inline_on_a_terminal_in_the_picked_conversation(
    api_server: str, api: AsyncClient, user: User
) -> None:
    earlier = await api.post("/api/v1/chat", json={"message": "hello"}, headers=user.headers)
    assert await outcome(api, user, earlier.json()["run_id"]) == "succeeded"

    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        *CHAT,
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_URL": api_server, "COLUMNS": "200", **password_env(user)},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    screen = bytearray()
    drained = asyncio.get_running_loop().run_in_executor(None, _drain, primary, screen)
    # Conversation 1, the message, approve, then the end of input (Ctrl-D) ends the session.
    os.write(primary, b"1\nplease cancel my subscription\ny\n\x04")
    await asyncio.wait_for(process.wait(), WAIT)
    await asyncio.wait_for(drained, WAIT)
    os.close(primary)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", screen.decode(errors="replace"))

    assert process.returncode == EXIT_COMPLETED, shown
    assert "1. hello" in shown
    assert "billing wants to run cancel_subscription({})" in shown
    stored = await messages(api, user)
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    reply = stored[3]
    assert reply["agent"] == "billing"
    assert reply["content"].startswith("please cancel my subscription ")
    assert f"billing:\n{reply['content']}\n" in shown


def _drain(primary: int, screen: bytearray) -> None:
    """Everything the terminal shows, until the process closed it."""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            return
        if not chunk:
            return
        screen.extend(chunk)


class CuttingProxy:
    """A TCP proxy to the API that cuts, once, the first connection whose response carried
    ``deltas`` message deltas, in the middle of the last of them."""

    def __init__(self, upstream: str, deltas: int = 3) -> None:
        parsed = httpx.URL(upstream)
        self.host, self.port = parsed.host, parsed.port or 80
        self.deltas = deltas
        self.cuts = 0
        self.url = ""

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        api_in, api_out = await asyncio.open_connection(self.host, self.port)

        async def upstream() -> None:
            while data := await client_in.read(65536):
                api_out.write(data)
                await api_out.drain()

        async def downstream() -> None:
            seen = b""
            marker = b"event: message.delta"
            while data := await api_in.read(65536):
                if not self.cuts:
                    seen += data
                    if seen.count(marker) >= self.deltas:
                        cut = _nth(seen, marker, self.deltas) + len(marker) + 10
                        client_out.write(data[: len(data) - (len(seen) - cut)])
                        await client_out.drain()
                        self.cuts += 1
                        return
                client_out.write(data)
                await client_out.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except ConnectionError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            client_out.transport.abort()
            api_out.transport.abort()


def _nth(data: bytes, marker: bytes, n: int) -> int:
    at = -1
    for _ in range(n):
        at = data.index(marker, at + 1)
    return at


async def test_a_dropped_stream_resumes_without_losing_or_repeating_text(
    api_server: str, api: AsyncClient, user: User
) -> None:
    message = " ".join(f"part{n}" for n in range(12))
    async with CuttingProxy(api_server) as proxy:
        process = await start(proxy.url, password_env(user), "--message", message)
        out, err = await finish(process)

    assert proxy.cuts == 1
    assert process.returncode == EXIT_COMPLETED, err
    stored = await messages(api, user)
    assert out == stored[1]["content"] + "\n"
    assert stored[1]["content"] == message


async def test_an_expired_access_token_is_refreshed_once() -> None:
    """In process: a 401 spends the refresh token once, and the request is sent again."""
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        if request.url.path == "/api/v1/auth/refresh":
            assert request.read() == b'{"refresh_token":"rt_1"}'
            pair = {"access_token": "new", "refresh_token": "rt_2", "expires_in": 900}
            return httpx.Response(200, json=pair)
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(401, json={"code": "auth.invalid_token", "detail": "expired"})
        return httpx.Response(200, json={"items": []})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://api.test", transport=transport) as http:
        session = Api(http, "old", "rt_1", 900)
        response = await session.request("GET", "/api/v1/conversations")

    assert response.json() == {"items": []}
    assert seen == [
        ("/api/v1/conversations", "Bearer old"),
        ("/api/v1/auth/refresh", None),
        ("/api/v1/conversations", "Bearer new"),
    ]


async def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ("id: 4", "event: message.delta", 'data: {"delta":"a "}', "", ": ping", ""):
            yield line
        for line in ("id: 5", "event: message.delta", 'data: {"delta":"b"}'):
            yield line

    events = [event async for event in parse_events(lines())]

    assert [(e.id, e.event, e.data) for e in events] == [(4, "message.delta", {"delta": "a "})]


def test_the_live_view_names_the_speaker_and_shows_tools_compactly() -> None:
    screen = io.StringIO()
    view = LiveView(Console(file=screen, force_terminal=True, width=80, color_system=None))
    view.start()
    stream: list[tuple[str, dict[str, Any]]] = [
        ("run.queued", {}),
        ("run.started", {"agent": "triage"}),
        ("tool.called", {"agent": "triage", "tool": "current_time", "arguments": {}}),
        ("tool.output", {"tool": "current_time", "output": "2026-11-27T10:44:13+00:00"}),
        ("agent.updated", {"agent": "billing"}),
        ("message.delta", {"agent": "billing", "delta": "please "}),
        ("message.delta", {"agent": "billing", "delta": "check"}),
        ("run.completed", {"usage": {"input_tokens": 11, "output_tokens": 5}}),
    ]
    for seq, (kind, data) in enumerate(stream, 1):
        view.event(Event(kind, data, seq))
    view.stop()

    shown = screen.getvalue()
    assert "triage calls current_time({})" in shown
    assert "current_time: 2026-11-27T10:44:13+00:00" in shown
    assert "handed off to billing" in shown
    assert "billing:\nplease check\n" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", shown)
    assert "completed (11 in, 5 out tokens)" in shown
