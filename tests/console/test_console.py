"""The web console in a real browser (Debian's Chromium through Playwright) against the real
stack: an API process serving the built console, a runs worker whose offline model streams a
word every 25 ms, PostgreSQL and Redis.

The console is built first (``npm ci`` and ``npm run build`` in clients/typescript and console/)
when its ``dist`` is missing or older than its sources."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    async_playwright,
    expect,
)

from switchboard.auth.keyring import KeySnapshot
from tests.support.worker import WorkerProcess, api_process, runs_worker_process

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
CLIENT = ROOT / "clients" / "typescript"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "images" / "console.png"
PASSWORD = "a long enough passphrase"
# A reply the offline model streams for about three seconds (a word every 25 ms), and one for
# five, long enough to outlast a page reload on a busy machine.
LONG = " ".join(f"word{n}" for n in range(120))
LONGER = " ".join(f"word{n}" for n in range(200))

pytestmark = pytest.mark.timeout(180)


# --- building the console ------------------------------------------------------------------


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())


def _stale(output: Path, sources: Iterable[Path]) -> bool:
    if not output.is_file():
        return True
    built = output.stat().st_mtime
    return any(source.stat().st_mtime > built for source in _files(sources))


def _npm(directory: Path, *args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not installed: the console tests build console/ with Node 20.19+"
            " (run `make test`, which builds it first, or install Node and npm)"
        )
    done = subprocess.run(
        [npm, *args], cwd=directory, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"`npm {' '.join(args)}` failed in {directory}:\n{done.stdout}\n{done.stderr}")


def _build(directory: Path, output: Path, sources: list[str]) -> None:
    if not _stale(output, [directory / name for name in sources]):
        return
    installed = directory / "node_modules" / ".package-lock.json"
    if _stale(installed, [directory / "package-lock.json"]):
        _npm(directory, "ci", "--no-audit", "--no-fund")
    _npm(directory, "run", "build")


@pytest.fixture(scope="session")
def console_dist() -> Path:
    """console/dist, built when missing or older than its sources or the client package's."""
    _build(CLIENT, CLIENT / "dist" / "index.js", ["src", "package.json", "tsconfig.json"])
    _build(
        CONSOLE,
        CONSOLE / "dist" / "index.html",
        ["src", "index.html", "package.json", "tsconfig.json", "vite.config.ts"],
    )
    if _stale(CONSOLE / "dist" / "index.html", [CLIENT / "dist"]):
        _npm(CONSOLE, "run", "build")
    return CONSOLE / "dist"


# --- the stack -----------------------------------------------------------------------------


def stop_if_started(
    starting: Future[WorkerProcess], worker: AbstractContextManager[WorkerProcess]
) -> None:
    # A worker that failed to start was stopped by its own context manager.
    if starting.exception() is None:
        worker.__exit__(None, None, None)


@pytest.fixture(scope="module")
def api_server(
    console_dist: Path,
    committed_keys: KeySnapshot,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An API process serving the built console, and a runs worker, started side by side."""
    logs = tmp_path_factory.mktemp("console-stack")
    worker = runs_worker_process(logs, concurrency=8, env={"OFFLINE_MODEL_TOKEN_DELAY_MS": "25"})
    with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        starting = pool.submit(worker.__enter__)
        stack.callback(stop_if_started, starting, worker)
        base = stack.enter_context(api_process(logs / "api.log"))
        starting.result()
        yield base


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


class Account:
    def __init__(self, base: str, email: str | None = None) -> None:
        self.email = email or f"console-{uuid.uuid4().hex[:10]}@example.com"
        registered = httpx.post(
            f"{base}/api/v1/auth/register",
            json={"email": self.email, "password": PASSWORD, "tenant_name": "Console Co"},
        )
        assert registered.status_code == 201, registered.text
        pair = httpx.post(
            f"{base}/api/v1/auth/login", json={"email": self.email, "password": PASSWORD}
        ).json()
        self.headers = {"Authorization": f"Bearer {pair['access_token']}"}
        self.base = base

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.base}{path}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def account(api_server: str, request: pytest.FixtureRequest) -> Account:
    """A new tenant and its owner: each test has the free plan's limits to itself. An
    indirect parameter names its email."""
    return Account(api_server, getattr(request, "param", None))


@pytest.fixture
async def page(browser: Browser, api_server: str, account: Account) -> AsyncIterator[Page]:
    """A signed-in console at 1280x800. Fails the test on any script error or CSP refusal."""
    context = await browser.new_context(
        base_url=api_server, viewport={"width": 1280, "height": 800}
    )
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A failed fetch the app handles (a 404 it expects) is not a problem; CSP refusals are.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    await opened.goto("/console/")
    await opened.get_by_label("Email").fill(account.email)
    await opened.get_by_label("Password").fill(PASSWORD)
    await opened.get_by_role("button", name="Sign in").click()
    await expect(opened.get_by_label("Message", exact=True)).to_be_focused()
    yield opened
    await context.close()
    assert problems == []


async def send(page: Page, message: str) -> tuple[Locator, str]:
    """Types the message and presses Enter; the reply's element and its run id."""
    before = await page.locator("li.live").count()
    box = page.get_by_label("Message", exact=True)
    await box.fill(message)
    await box.press("Enter")
    await expect(page.locator("li.live")).to_have_count(before + 1)
    reply = page.locator("li.live").last
    run_id = await reply.get_attribute("data-run-id")
    assert run_id
    return reply, run_id


async def reply_text(reply: Locator) -> str:
    return "".join(await reply.locator(".segment").all_text_contents())


def stored_reply(account: Account, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run = account.get(f"/api/v1/runs/{run_id}")
    messages = account.get(f"/api/v1/conversations/{run['conversation_id']}/messages")["items"]
    return run, [m for m in messages if m["role"] == "assistant"]


def screenshot_saved(data: bytes) -> None:
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(data)
    artifacts = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(SCREENSHOT, Path(artifacts) / SCREENSHOT.name)


# --- serving -------------------------------------------------------------------------------


def test_the_api_serves_the_console_under_a_strict_policy(api_server: str) -> None:
    for path in ("/console", "/console/", "/console/c/3f0c8a3e-2b1d-4e6f-9a7c-3d2e1f0a9b8c"):
        answer = httpx.get(f"{api_server}{path}")
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-cache"
        assert '<div id="app">' in answer.text
    script = re.search(r'src="(/console/assets/[^"]+\.js)"', answer.text)
    assert script is not None
    asset = httpx.get(f"{api_server}{script.group(1)}")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    missing = httpx.get(f"{api_server}/console/assets/gone-1234.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == "http.not_found"


# --- the browser ---------------------------------------------------------------------------


async def test_a_reply_streams_word_by_word_then_completes(page: Page, account: Account) -> None:
    box = page.get_by_label("Message", exact=True)
    # Shift+Enter is a new line, not a send.
    await box.type("first line")
    await box.press("Shift+Enter")
    await box.type("second")
    assert await box.input_value() == "first line\nsecond"
    assert await page.locator("li.live").count() == 0

    message = " ".join(f"token{n}" for n in range(100))
    reply, run_id = await send(page, message)
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while await reply.get_attribute("data-status") != "completed":
        assert time.monotonic() < deadline, "the reply did not complete"
        length = len(await reply_text(reply))
        if length and (not seen or length != seen[-1]):
            seen.append(length)
        await page.wait_for_timeout(60)
    # The text grew over several observations before it was complete.
    assert len(seen) >= 4, seen
    assert seen == sorted(seen)
    assert seen[0] < len(message)
    assert await reply_text(reply) == message
    run, replies = stored_reply(account, run_id)
    assert run["status"] == "succeeded"
    assert [r["content"] for r in replies] == [message]
    # The new conversation is listed, and its address is in the bar.
    await expect(page.get_by_role("link", name=message[:30])).to_be_visible()
    assert run["conversation_id"] in page.url


@pytest.mark.parametrize("account", ["ada@example.com"], indirect=True)
async def test_a_handoff_shows_the_agent_speaking(page: Page, account: Account) -> None:
    reply, run_id = await send(page, "please check my invoice")
    agent = reply.get_by_test_id("agent")
    await expect(reply.get_by_test_id("handoff")).to_have_text("triage handed off to billing")
    await expect(reply).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(agent).to_have_text("billing")
    run, replies = stored_reply(account, run_id)
    assert run["agent"] == "billing"
    assert [(r["content"], r["agent"]) for r in replies] == [("please check my invoice", "billing")]

    # Billing again, which then calls usage_summary: the call and its output are shown.
    second, run_id = await send(page, "billing usage please")
    await expect(second).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(second.get_by_test_id("agent")).to_have_text("billing")
    tool = second.locator('[data-tool="usage_summary"]')
    await expect(tool).to_be_visible()
    output = json.loads(await tool.locator(".output").text_content() or "")
    assert output["runs"] == 1
    _, replies = stored_reply(account, run_id)
    assert [r["content"] for r in replies][-1] == await reply_text(second)

    # The chat screen after a completed exchange, for the README. The account, the messages
    # and the offline model's answers are fixed, so the image changes only with the console.
    await page.get_by_label("Message", exact=True).focus()
    screenshot_saved(await page.screenshot())


async def test_stop_cancels_the_run_and_keeps_the_partial_reply(
    page: Page, account: Account
) -> None:
    reply, run_id = await send(page, LONG)
    await expect(reply.locator(".segment")).to_contain_text("word10")
    await page.get_by_role("button", name="Stop").click()
    await expect(reply).to_have_attribute("data-status", "cancelled", timeout=15_000)
    shown = await reply_text(reply)
    assert shown
    assert LONG.startswith(shown)
    assert shown != LONG
    run, replies = stored_reply(account, run_id)
    assert run["status"] == "cancelled"
    # What was shown is what was stored, marked incomplete.
    assert [(r["content"], r["incomplete"]) for r in replies] == [(shown, True)]
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    await expect(page.get_by_role("button", name="Stop")).to_be_hidden()


async def test_a_reload_mid_stream_resumes_without_losing_or_repeating_text(
    page: Page, account: Account
) -> None:
    reply, run_id = await send(page, LONGER)
    await expect(reply.locator(".segment")).to_contain_text("word15")
    before = await reply_text(reply)
    await page.reload()
    resumed = page.locator(f'li.live[data-run-id="{run_id}"]')
    # What was shown before the reload is shown again at once, from the tab's storage.
    await expect(resumed).to_have_count(1)
    assert (await reply_text(resumed)).startswith(before)
    await expect(resumed).to_have_attribute("data-status", "completed", timeout=20_000)
    run, replies = stored_reply(account, run_id)
    assert run["status"] == "succeeded"
    assert [r["content"] for r in replies] == [LONGER]
    assert await reply_text(resumed) == LONGER
    # One user message and one reply: nothing rendered twice.
    assert await page.locator("ol.log > li.msg.assistant").count() == 1
    assert await page.locator("ol.log > li.msg.user").count() == 1


async def test_a_dropped_stream_resumes_without_losing_or_repeating_text(
    page: Page, account: Account
) -> None:
    # The first stream's connection ends after 25 events, without its terminal event, as
    # when the network drops; the client reconnects from the last event it got.
    opened: list[str | None] = []

    async def drop_the_first(route: Route) -> None:
        opened.append(route.request.headers.get("last-event-id"))
        if len(opened) > 1:
            await route.continue_()
            return
        response = await route.fetch()
        frames = (await response.text()).split("\r\n\r\n")
        await route.fulfill(response=response, body="\r\n\r\n".join(frames[:25]) + "\r\n\r\n")

    await page.route(re.compile(r"/api/v1/runs/[^/]+/stream"), drop_the_first)
    reply, run_id = await send(page, LONG)
    await expect(reply).to_have_attribute("data-status", "completed", timeout=20_000)
    assert opened[0] in (None, "0")
    assert opened[1] == "25", opened
    _, replies = stored_reply(account, run_id)
    assert [r["content"] for r in replies] == [LONG]
    assert await reply_text(reply) == LONG
    assert await page.locator("ol.log > li.msg.assistant").count() == 1


async def test_an_approval_is_asked_then_granted_in_the_console(
    page: Page, account: Account
) -> None:
    reply, run_id = await send(page, "please cancel my subscription")
    approve = reply.get_by_role("button", name="Approve")
    await expect(approve).to_be_visible(timeout=15_000)
    await expect(reply).to_have_attribute("data-status", "requires_action")
    await expect(reply.get_by_role("button", name="Reject")).to_be_enabled()
    assert account.get(f"/api/v1/runs/{run_id}")["status"] == "requires_action"
    await approve.click()
    await expect(reply).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(approve).to_be_disabled()
    await expect(reply.locator(".decision")).to_have_text("Approved")
    tool = reply.locator('[data-tool="cancel_subscription"] .output')
    await expect(tool).not_to_have_text("…")
    run, replies = stored_reply(account, run_id)
    assert run["status"] == "succeeded"
    assert [r["content"] for r in replies] == [await reply_text(reply)]

    # At phone width nothing scrolls sideways and the composer stays usable.
    await page.set_viewport_size({"width": 390, "height": 844})
    width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390
    await expect(page.get_by_label("Message", exact=True)).to_be_in_viewport()
    await expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    artifacts = os.environ.get("CONSOLE_SCREENSHOT_DIR")
    if artifacts:
        await page.screenshot(path=str(Path(artifacts) / "console-phone.png"))


async def test_plan_members_and_webhooks_sections(page: Page, account: Account) -> None:
    await page.get_by_role("link", name="Plan & usage").click()
    await expect(page.get_by_role("heading", name="This month")).to_be_visible()
    await expect(page.get_by_text("No subscription")).to_be_visible()

    await page.get_by_role("link", name="Members").click()
    await expect(page.get_by_role("cell", name=f"{account.email} (you)")).to_be_visible()
    await page.get_by_label("Email").fill("invitee@example.com")
    await page.get_by_role("button", name="Invite").click()
    await expect(page.get_by_role("cell", name="invitee@example.com", exact=True)).to_be_visible()

    await page.get_by_role("link", name="Webhooks").click()
    await page.get_by_label("URL (https)").fill("https://hooks.example.com/switchboard")
    await page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_test_id("webhook-secret")
    await expect(secret).to_have_text(re.compile(r"^whsec_"))
    endpoint = page.get_by_role("article", name="https://hooks.example.com/switchboard")
    await endpoint.get_by_role("button", name="Delivery log").click()
    await expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
    # The secret is in no later answer: the list shows none.
    endpoints = account.get("/api/v1/webhooks/endpoints")
    assert [e["url"] for e in endpoints] == ["https://hooks.example.com/switchboard"]
    assert "secret" not in endpoints[0]
