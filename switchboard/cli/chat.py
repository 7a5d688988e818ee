"""``switchboard chat``: talk to the agents from a terminal, through the API."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TextIO

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from switchboard.cli.chat_api import TERMINAL, Api, ConnectionLost, ProblemError
from switchboard.cli.sse import Event

DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_REFUSED = 4
EXIT_UNREACHABLE = 5
EXIT_UNANSWERED = 6
EXIT_INTERRUPTED = 130


_OUTCOMES = {
    "run.completed": EXIT_COMPLETED,
    "run.failed": EXIT_FAILED,
    "run.cancelled": EXIT_CANCELLED,
}
_ARGUMENTS_CHARS = 120
_OUTPUT_CHARS = 200


class Unanswered(Exception):
    """stdin closed while a question was asked."""


class View(Protocol):
    """How a run's events reach the terminal."""

    def start(self) -> None: ...
    def event(self, event: Event) -> None: ...
    def stop(self) -> None: ...
    def note(self, text: str, style: str = "dim") -> None: ...


def _compact(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _describe(event: Event) -> tuple[str, str] | None:
    """The one-line note an event other than text deserves, with its style."""
    data = event.data
    match event.event:
        case "agent.updated":
            return f"↳ handed off to {data.get('agent')}", "magenta"
        case "tool.called":
            arguments = _compact(data.get("arguments", {}), _ARGUMENTS_CHARS)
            return f"⚙ {data.get('agent')} calls {data.get('tool')}({arguments})", "cyan"
        case "tool.output":
            output = _compact(data.get("output", ""), _OUTPUT_CHARS)
            return f"  ↳ {data.get('tool')}: {output}", "dim"
        case "message.completed" if data.get("incomplete"):
            return "(the reply was cut short)", "yellow"
        case "run.completed":
            usage = data.get("usage") or {}
            tokens = f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out"
            return f"✓ completed ({tokens} tokens)", "dim"
        case "run.failed":
            error = data.get("error") or {}
            return f"✗ run failed: {error.get('code')}: {error.get('message')}", "red"
        case "run.cancelled":
            return "■ run cancelled", "yellow"
    return None


class LiveView:
    """A terminal: the speaking agent's name and its reply redrawn as deltas arrive; handoffs,
    tool calls and their outputs as lines between the replies."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.agent: str | None = None
        self.text = ""
        self.live: Live | None = None

    def _render(self) -> RenderableType:
        name = Text(f"{self.agent or '…'}:", style="bold green")
        return Group(name, Text(self.text)) if self.text else name

    def _commit(self) -> None:
        if self.text:
            self.console.print(self._render())
            self.text = ""

    def start(self) -> None:
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=20, transient=True
        )
        self.live.start()

    def event(self, event: Event) -> None:
        if event.event == "message.delta":
            self.agent = str(event.data.get("agent") or self.agent)
            self.text += str(event.data.get("delta", ""))
        else:
            if event.event in ("run.started", "agent.updated", "tool.called") or (
                event.event in TERMINAL
            ):
                self._commit()
            if event.event in ("run.started", "agent.updated"):
                self.agent = str(event.data.get("agent"))
            described = _describe(event)
            if described:
                self.console.print(Text(*described))
        if self.live is not None:
            self.live.update(self._render())

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        self._commit()

    def note(self, text: str, style: str = "dim") -> None:
        self.console.print(Text(text, style=style))


class PlainView:
    """Not a terminal, or a script: the reply's text alone on ``out``, as it arrives; what
    else happens as lines on ``notes`` (stderr)."""

    def __init__(self, out: TextIO, notes: Console) -> None:
        self.out = out
        self.notes = notes
        self.wrote = False
        self.line_open = False

    def start(self) -> None:
        self.wrote = False

    def event(self, event: Event) -> None:
        if event.event == "message.delta":
            delta = str(event.data.get("delta", ""))
            if self.wrote and not self.line_open:
                self.out.write("\n")  # a second message of the run
            self.out.write(delta)
            self.out.flush()
            self.wrote = self.line_open = bool(delta) or self.wrote
            return
        if event.event in ("tool.called", "agent.updated"):
            self.line_open = False
        described = _describe(event)
        if described:
            self.notes.print(Text(*described))

    def stop(self) -> None:
        if self.wrote:
            self.out.write("\n")
            self.out.flush()
        self.wrote = self.line_open = False

    def note(self, text: str, style: str = "dim") -> None:
        self.notes.print(Text(text, style=style))


class JsonView:
    """``--json``: every event as a JSON line on ``out``, ``{"id", "event", "data"}``."""

    def __init__(self, out: TextIO, notes: Console) -> None:
        self.out = out
        self.notes = notes

    def start(self) -> None:
        pass

    def event(self, event: Event) -> None:
        line = json.dumps({"id": event.id, "event": event.event, "data": event.data})
        self.out.write(line + "\n")
        self.out.flush()

    def stop(self) -> None:
        pass

    def note(self, text: str, style: str = "dim") -> None:
        self.notes.print(Text(text, style=style))


class Lines:
    """stdin read by a daemon thread, so a question can be abandoned (Ctrl-C) and the process
    can quit while a read is pending. ``None`` is the end of input."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.thread: threading.Thread | None = None

    def _read(self) -> None:
        while True:
            line = sys.stdin.readline()
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line or None)
            if not line:
                return

    async def read(self) -> str | None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._read, name="stdin", daemon=True)
            self.thread.start()
        line = await self.queue.get()
        if line is None:
            self.queue.put_nowait(None)  # every later read sees the end too
            return None
        return line.rstrip("\r\n")


@dataclass
class Options:
    message: str | None
    conversation: str | None
    new: bool
    agent: str | None
    as_json: bool


class Session:
    """One signed-in chat: sends messages, follows their runs, asks for approvals, cancels on
    Ctrl-C."""

    def __init__(
        self, api: Api, view: View, ui: Console, lines: Lines, conversation: str | None
    ) -> None:
        self.api = api
        self.view = view
        self.ui = ui
        self.lines = lines
        self.conversation = conversation
        self.run_id: str | None = None
        self.cancelling = False
        self.interrupted = asyncio.Event()
        self.quit = False
        self.main: asyncio.Task[Any] | None = None
        self.cancel_task: asyncio.Task[None] | None = None

    # Ctrl-C: the first during a run cancels it, any other quits.
    def on_interrupt(self) -> None:
        if self.run_id is not None and not self.cancelling:
            self.cancelling = True
            self.interrupted.set()
            self.view.note(f"cancelling run {self.run_id}… (Ctrl-C again to quit)", "yellow")
            self.cancel_task = asyncio.create_task(self._cancel(self.run_id))
            return
        self.quit = True
        if self.main is not None:
            self.main.cancel()

    async def _cancel(self, run_id: str) -> None:
        try:
            await self.api.request("POST", f"/api/v1/runs/{run_id}/cancel")
        except ProblemError as exc:
            if exc.code != "run.finished":  # it ended first: its own terminal event follows
                self.view.note(f"cancel refused: {exc}", "red")
        except ConnectionLost as exc:
            self.view.note(str(exc), "red")

    async def ask(self, prompt: str) -> str:
        """A line of stdin, or ``Unanswered`` at its end; abandoned by a Ctrl-C during a run."""
        self.ui.print(Text(prompt, style="bold"), end="")
        self.ui.file.flush()
        reading = asyncio.ensure_future(self.lines.read())
        waiting = asyncio.ensure_future(self.interrupted.wait())
        try:
            await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if not reading.done():
            reading.cancel()
            self.ui.print()
            raise asyncio.CancelledError  # only caught by send(): the run is being cancelled
        line = reading.result()
        if line is None:
            self.ui.print()
            raise Unanswered
        return line

    async def send(self, message: str, agent: str | None) -> int:
        """Sends one message and follows its run to the end; the exit code of its outcome."""
        body: dict[str, Any] = {"message": message}
        if self.conversation:
            body["conversation_id"] = self.conversation
        if agent:
            body["agent"] = agent
        accepted = (await self.api.request("POST", "/api/v1/chat", json=body)).json()
        self.conversation = str(accepted["conversation_id"])
        run_id = self.run_id = str(accepted["run_id"])
        self.cancelling = False
        self.interrupted.clear()
        unanswered = False
        self.view.start()
        try:
            async for event in self.api.follow(run_id, str(accepted["stream_url"])):
                self.view.event(event)
                if event.event in TERMINAL:
                    outcome = _OUTCOMES[event.event]
                    if event.event != "run.completed":
                        self._report(run_id, event)
                    return EXIT_UNANSWERED if unanswered else outcome
                if event.event == "run.requires_action" and not self.cancelling:
                    try:
                        await self._approve(run_id, event.data.get("approvals") or [])
                    except Unanswered:
                        unanswered = True
                        self.on_interrupt()
                    except asyncio.CancelledError:
                        if self.quit:
                            raise
            raise ConnectionLost(f"the stream of run {run_id} ended without its outcome")
        finally:
            self.view.stop()
            self.run_id = None
            self.cancelling = False
            self.interrupted.clear()

    def _report(self, run_id: str, event: Event) -> None:
        if not isinstance(self.view, PlainView | JsonView):
            return  # the live view showed it already
        if event.event == "run.failed":
            error = event.data.get("error") or {}
            self.view.note(f"switchboard: run {run_id} failed: {error.get('code')}", "red")
        else:
            self.view.note(f"switchboard: run {run_id} cancelled", "yellow")

    async def _approve(self, run_id: str, approvals: list[dict[str, Any]]) -> None:
        self.view.stop()
        try:
            await self._decide(run_id, approvals)
        finally:
            self.view.start()

    async def _decide(self, run_id: str, approvals: list[dict[str, Any]]) -> None:
        decisions = []
        for approval in approvals:
            arguments = _compact(approval.get("arguments", {}), _ARGUMENTS_CHARS)
            self.ui.print(
                Text.assemble(
                    ("? ", "bold yellow"),
                    (f"{approval.get('agent')} wants to run ", ""),
                    (f"{approval.get('tool')}({arguments})", "bold"),
                )
            )
            while True:
                answer = (await self.ask("Approve? [y/n] ")).strip().lower()
                if answer in ("y", "yes", "n", "no"):
                    break
            decision: dict[str, Any] = {"id": approval["id"], "approve": answer.startswith("y")}
            if not decision["approve"]:
                reason = (await self.ask("Reason (optional): ")).strip()
                if reason:
                    decision["reason"] = reason
            decisions.append(decision)
        await self.api.request(
            "POST", f"/api/v1/runs/{run_id}/approvals", json={"decisions": decisions}
        )

    async def pick(self) -> None:
        """Lists the recent conversations and lets the user continue one or start anew."""
        page = (await self.api.request("GET", "/api/v1/conversations", params={"limit": 10})).json()
        items = page.get("items") or []
        if not items:
            return
        self.ui.print(Text("Recent conversations:", style="bold"))
        for number, item in enumerate(items, 1):
            updated = str(item.get("updated_at", ""))[:16].replace("T", " ")
            title = escape(str(item.get("title") or ""))
            self.ui.print(f"  {number:>2}. {title} [dim]{updated}[/]")
        while True:
            answer = (await self.ask("Continue which (number), or Enter for a new one? ")).strip()
            if not answer:
                return
            if answer.isdigit() and 1 <= int(answer) <= len(items):
                chosen = items[int(answer) - 1]
                self.conversation = str(chosen["id"])
                self.ui.print(Text(f"Continuing “{chosen.get('title')}”.", style="dim"))
                return

    async def converse(self, agent: str | None) -> int:
        """The interactive loop: a message per line until the end of input or ``/quit``."""
        self.ui.print(Text("Type a message; /new starts a new conversation, /quit ends.", "dim"))
        while True:
            try:
                line = (await self.ask("you> ")).strip()
            except Unanswered:
                return EXIT_COMPLETED
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return EXIT_COMPLETED
            if line == "/new":
                self.conversation = None
                self.ui.print(Text("New conversation.", style="dim"))
                continue
            try:
                outcome = await self.send(line, agent)
            except ProblemError as exc:
                self.view.note(f"switchboard: {exc}", "red")
                continue
            except ConnectionLost as exc:
                self.view.note(f"switchboard: {exc}", "red")
                continue
            if outcome == EXIT_UNANSWERED:
                return outcome


def _credentials() -> tuple[str | None, str | None, str | None]:
    """The access token, or the email and password, from the environment or asked for."""
    token = os.environ.get("SWITCHBOARD_TOKEN", "").strip()
    if token:
        return token, None, None
    email = os.environ.get("SWITCHBOARD_EMAIL", "").strip()
    password = os.environ.get("SWITCHBOARD_PASSWORD", "")
    if email and password:
        return None, email, password
    if not sys.stdin.isatty():
        typer.echo(
            "switchboard: set SWITCHBOARD_TOKEN, or SWITCHBOARD_EMAIL and SWITCHBOARD_PASSWORD",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        email = email or input("Email: ").strip()
        password = getpass.getpass("Password: ")
    except (EOFError, KeyboardInterrupt):
        raise typer.Exit(EXIT_INTERRUPTED) from None
    return None, email, password


@contextlib.contextmanager
def _interrupts(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> Iterator[None]:
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except NotImplementedError:  # Windows: no signal handlers in the loop
        previous = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(handler))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _chat(
    url: str, options: Options, credentials: tuple[str | None, str | None, str | None]
) -> int:
    token, email, password = credentials
    loop = asyncio.get_running_loop()
    out_is_terminal = sys.stdout.isatty()
    interactive = options.message is None
    # Questions, notes and errors go to stderr unless the whole exchange is on a terminal.
    ui = Console(stderr=options.as_json or not (interactive and out_is_terminal), highlight=False)
    notes = Console(stderr=True, highlight=False)
    view: View
    if options.as_json:
        view = JsonView(sys.stdout, notes)
    elif out_is_terminal:
        view = LiveView(Console(highlight=False))
    else:
        view = PlainView(sys.stdout, notes)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        try:
            if token:
                api = Api(http, token)
            else:
                api = await Api.sign_in(
                    http, email or "", password or "", os.environ.get("SWITCHBOARD_TENANT")
                )
            session = Session(api, view, ui, Lines(loop), options.conversation)
            session.main = asyncio.current_task()
            with _interrupts(loop, session.on_interrupt):
                try:
                    if not interactive:
                        assert options.message is not None
                        return await session.send(options.message, options.agent)
                    if options.conversation is None and not options.new:
                        await session.pick()
                    return await session.converse(options.agent)
                except (asyncio.CancelledError, Unanswered):
                    if session.quit:
                        if session.cancel_task is not None:
                            # The cancel asked for must reach the API before the process ends.
                            await asyncio.wait({session.cancel_task}, timeout=10)
                        notes.print()
                        return EXIT_INTERRUPTED
                    raise
        except ProblemError as exc:
            typer.echo(f"switchboard: {exc}", err=True)
            return EXIT_REFUSED
        except ConnectionLost as exc:
            typer.echo(f"switchboard: {exc}", err=True)
            return EXIT_UNREACHABLE


def chat(
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="Send this one message, print the reply and exit."),
    ] = None,
    conversation: Annotated[
        str | None, typer.Option("--conversation", "-c", help="Continue this conversation.")
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Start a new conversation without asking.")
    ] = False,
    agent: Annotated[
        str | None, typer.Option("--agent", help="The agent that answers first (default triage).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every run event as a JSON line instead.")
    ] = False,
    url: Annotated[
        str, typer.Option("--url", envvar="SWITCHBOARD_URL", help="The API's base URL.")
    ] = DEFAULT_URL,
) -> None:
    """Chat with the agents through the API.

    Signs in with SWITCHBOARD_TOKEN (an access token), or SWITCHBOARD_EMAIL and
    SWITCHBOARD_PASSWORD, or asks. Ctrl-C during a reply cancels the run; a second one quits.
    Tool calls that need approval are asked inline.

    Exit codes: 0 the run completed (or the session ended);
    1 the run failed (its error code is printed to stderr);
    2 wrong options or no credentials;
    3 the run was cancelled (Ctrl-C, or by someone else);
    4 the API refused a request (its problem code is printed to stderr);
    5 the API could not be reached, or the run's stream was lost for good;
    6 a tool approval was asked and stdin closed: the run was cancelled;
    130 a second Ctrl-C (or Ctrl-C at the prompt) quit.
    """
    if conversation and new:
        typer.echo("switchboard: --conversation and --new exclude each other", err=True)
        raise typer.Exit(EXIT_USAGE)
    options = Options(message, conversation, new, agent, as_json)
    credentials = _credentials()
    raise typer.Exit(asyncio.run(_chat(url.rstrip("/"), options, credentials)))
