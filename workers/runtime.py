"""The composition root of a worker process: its event loop and every long-lived object its
tasks use.

Celery calls tasks synchronously. Async domain code needs a loop, and its engine and Redis
pools belong to the loop that created them: a fresh ``asyncio.run()`` per task would strand
pooled connections on dead loops ("attached to a different loop"). So each process starts one
loop on first use, after any fork, creates its clients inside it, and every task submits its
coroutine there. Thread-pool workers share that loop, so one process serves many tasks at once.

What the tasks use besides the clients (the event publisher, the cancel listener, the agents,
the Stripe gateway, the key store, the mailer) is built here too, once per process: a forked
child builds its own and never touches what its parent built.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

import uvloop

from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.auth.keystore import KeyStore, create_key_store
from switchboard.billing.gateway import StripeGateway
from switchboard.kit.jobs import JobSender
from switchboard.kit.resources import Resources, open_resources
from switchboard.kit.uow import UnitOfWork
from switchboard.mail.sealing import MailSealer
from switchboard.mail.sender import SmtpSender
from switchboard.runs.admission import RunSlots
from switchboard.runs.cancel import CancelNotices
from switchboard.runs.events import EventPublisher
from switchboard.settings import Settings
from switchboard.webhooks.delivery import sending_lease
from switchboard.webhooks.inflight import EndpointSlots
from switchboard.webhooks.signing import SecretBox
from switchboard.webhooks.transport import WebhookTransport

T = TypeVar("T")


class WorkerRuntime:
    def __init__(self, settings: Settings, job_sender: JobSender) -> None:
        self._settings = settings
        self._job_sender = job_sender
        self._lock = threading.Lock()
        self._process: _Process | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def resources(self) -> Resources:
        return self._current().resources

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._current().loop

    @property
    def publisher(self) -> EventPublisher:
        return self._current().publisher

    @property
    def run_slots(self) -> RunSlots:
        """The tenants' concurrency slots, given back as runs end."""
        return self._current().run_slots

    @property
    def cancel_notices(self) -> CancelNotices:
        """One listener per process, shared by every run the process executes."""
        return self._current().cancel_notices

    @property
    def agents(self) -> AgentRuntime:
        return self._current().agents.get()

    @property
    def gateway(self) -> StripeGateway:
        """Raises ``BillingNotConfiguredError`` without ``STRIPE_API_KEY``."""
        return self._current().gateway.get()

    @property
    def key_store(self) -> KeyStore:
        return self._current().key_store.get()

    @property
    def mailer(self) -> SmtpSender:
        """Raises ``UndeliverableMailError`` without ``SMTP_HOST``."""
        return self._current().mailer.get()

    @property
    def mail_sealer(self) -> MailSealer:
        return self._current().mail_sealer.get()

    @property
    def webhook_transport(self) -> WebhookTransport:
        """Keeps connections to receivers open between deliveries."""
        return self._current().webhook_transport

    @property
    def webhook_secret_box(self) -> SecretBox:
        return self._current().webhook_secret_box.get()

    @property
    def webhook_slots(self) -> EndpointSlots:
        return self._current().webhook_slots

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this process's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # A time limit or shutdown interrupted the wait: stop the coroutine as well.
            future.cancel()
            raise

    @property
    def job_sender(self) -> JobSender:
        return self._job_sender

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.resources.sessionmaker, self._job_sender)

    def _current(self) -> _Process:
        process = self._process
        if process is not None and process.pid == os.getpid():
            return process
        with self._lock:
            if self._process is None or self._process.pid != os.getpid():
                # Either never started, or inherited across fork: the parent's loop thread
                # does not exist here, so start afresh and never touch the inherited objects.
                self._process = _Process.start(self._settings)
            return self._process

    def stop(self) -> None:
        with self._lock:
            process = self._process
            if process is None or process.pid != os.getpid():
                return
            process.stop()
            self._process = None


class _Process:
    """What one process built, on and around its own loop."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        stack: AsyncExitStack,
        resources: Resources,
    ) -> None:
        self.pid = os.getpid()
        self.loop, self.thread, self.stack, self.resources = loop, thread, stack, resources
        self.publisher = EventPublisher.for_settings(resources.redis, settings.runs)
        self.cancel_notices = CancelNotices(resources.redis)
        self.run_slots = RunSlots(resources.redis)
        webhooks = settings.webhooks
        self.webhook_transport = WebhookTransport(
            webhooks, allow_private=webhooks.allow_private_targets
        )
        self.webhook_slots = EndpointSlots(
            resources.redis,
            limit=webhooks.endpoint_concurrency,
            lease_seconds=sending_lease(webhooks).total_seconds(),
        )
        # Closed before the clients it listens on (the stack unwinds last in, first out).
        stack.push_async_callback(self.cancel_notices.stop)
        stack.push_async_callback(self.webhook_transport.aclose)
        # Built at first use, as tasks need them: a worker that never runs a billing task
        # starts without Stripe settings, one that never runs an agent builds no agents.
        self.agents = _Once(lambda: create_agent_runtime(settings.openai, settings.offline))
        self.gateway = _Once(lambda: StripeGateway(settings.stripe))
        self.key_store = _Once(lambda: create_key_store(settings.auth))
        self.mailer = _Once(lambda: SmtpSender(settings.smtp))
        self.mail_sealer = _Once(lambda: MailSealer.for_settings(settings))
        self.webhook_secret_box = _Once(lambda: SecretBox.for_settings(webhooks))

    @classmethod
    def start(cls, settings: Settings) -> _Process:
        # uvloop, as uvicorn runs the API: far less overhead per callback than asyncio's.
        loop = uvloop.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="switchboard-loop", daemon=True)
        thread.start()
        stack = AsyncExitStack()
        opened = open_resources(settings, application_name="switchboard-worker")
        resources = asyncio.run_coroutine_threadsafe(
            stack.enter_async_context(opened), loop
        ).result()
        return cls(settings, loop, thread, stack, resources)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class _Once(Generic[T]):
    """A value built by the first caller; pool threads asking at once still build it once."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value
