"""The application factory: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, cast

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.docs import install_docs
from api.errors import ErrorBoundary, install_error_handlers
from api.metrics import metrics_endpoint
from api.middleware import (
    BodySizeLimitMiddleware,
    MetricsMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from api.openapi import describe_problems, restore_example_nulls
from api.routes import (
    agents,
    auth,
    billing,
    console,
    conversations,
    health,
    identity,
    retention,
    runs,
    webhooks,
)
from api.tracing import instrument_app
from switchboard.agents.factory import create_agent_runtime
from switchboard.auth.authority import TokenAuthority
from switchboard.auth.keyring import KeyRing
from switchboard.auth.keystore import create_key_store
from switchboard.auth.nonces import create_replay_cache
from switchboard.identity.notifier import LogNotifier
from switchboard.identity.passwords import PasswordHasher
from switchboard.kit.jobs import JobSender
from switchboard.kit.logging import configure_logging
from switchboard.kit.resources import open_resources
from switchboard.kit.tracing import setup_tracing, shutdown_tracing
from switchboard.mail.sealing import MailSealer
from switchboard.runs.admission import Admission
from switchboard.runs.events import EventPublisher
from switchboard.runs.hub import EventHub
from switchboard.runs.stream_slots import StreamSlots
from switchboard.settings import Settings, settings_or_exit
from switchboard.webhooks.signing import SecretBox


class SwitchboardApp(FastAPI):
    """FastAPI with the proxy and security headers around the whole stack.

    Outside Starlette's error middleware, not inside it with the other middleware: the 500 it
    renders carries the security headers too, and every layer sees the client's address and
    scheme, never a forged one. They wrap the application itself rather than Starlette's
    middleware stack, which stays as Starlette builds it: the tracing instrumentation wraps
    that one and expects it unchanged.
    """

    def __init__(self, *, trusted_proxies: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trusted_proxies = trusted_proxies
        self._outermost: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._outermost is None:
            self._outermost = self._wrap(super().__call__)
        await self._outermost(scope, receive, send)

    def _wrap(self, inner: ASGIApp) -> ASGIApp:
        # The boundary outside Starlette's error middleware keeps an error raised in a
        # middleware from reaching the server once that middleware has answered the 500.
        app = SecurityHeadersMiddleware(ErrorBoundary(inner))
        if not self.trusted_proxies:
            return app
        # Only a peer in these networks may name the client (the right-most address of
        # X-Forwarded-For outside them) and the scheme; uvicorn runs with proxy_headers off.
        # uvicorn types ASGI callables more narrowly than Starlette; both are plain ASGI.
        proxied = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=self.trusted_proxies)
        return cast(ASGIApp, proxied)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = describe_problems(restore_example_nulls(super().openapi()))
        return self.openapi_schema


def create_app(settings: Settings | None = None, *, job_sender: JobSender | None = None) -> FastAPI:
    settings = settings or settings_or_exit()
    tracing = settings.otel.enabled
    configure_logging(settings.log, settings.environment, service="api", trace_ids=tracing)
    # Before the lifespan opens the engine and the Redis clients, which it then instruments.
    setup_tracing(settings.otel, service="switchboard-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, application_name="switchboard-api") as resources:
            app.state.resources = resources
            app.state.job_sender = job_sender or _celery_sender()
            keyring = KeyRing(
                resources.sessionmaker, create_key_store(settings.auth), settings.auth
            )
            app.state.authority = TokenAuthority(keyring, settings.auth)
            app.state.password_hasher = PasswordHasher.from_settings(settings.identity)
            app.state.notifier = LogNotifier(include_link=settings.environment.local)
            # With SMTP configured, each request's notifier seals mail jobs with this.
            app.state.mail_sealer = (
                MailSealer.for_settings(settings) if settings.smtp.configured else None
            )
            app.state.agents = create_agent_runtime(settings.openai, settings.offline).registry
            app.state.event_hub = EventHub(resources.redis)
            app.state.webhook_secret_box = SecretBox.for_settings(settings.webhooks)
            app.state.event_publisher = EventPublisher.for_settings(resources.redis, settings.runs)
            app.state.admission = Admission(resources.redis, settings.runs)
            app.state.stream_slots = StreamSlots(resources.redis, settings.runs)
            app.state.replay_cache = create_replay_cache(
                settings.auth.nonce_backend, resources.redis
            )
            try:
                yield
            finally:
                await app.state.stream_slots.stop()
                await app.state.event_hub.stop()
                # What is still buffered goes out before the process exits.
                shutdown_tracing()

    openapi_url = "/openapi.json" if settings.docs_served else None
    app = SwitchboardApp(
        trusted_proxies=[str(network) for network in settings.api.trusted_proxies],
        title="Switchboard",
        version=version("switchboard"),
        summary="Backend for AI-agent chat products.",
        lifespan=lifespan,
        openapi_url=openapi_url,
        # Served by install_docs from this process, not from FastAPI's CDN.
        docs_url=None,
        redoc_url=None,
    )
    if tracing:
        instrument_app(app)
    if openapi_url is not None:
        install_docs(app, openapi_url)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.api.max_body_bytes)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            # Scripts read these: the request id, the next page of members and invitations,
            # how long to wait after a 429, and the runs limit's state.
            expose_headers=["X-Request-ID", "Link", "Retry-After", "RateLimit", "RateLimit-Policy"],
        )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(identity.router)
    app.include_router(identity.tenant_router)
    app.include_router(runs.router)
    app.include_router(conversations.router)
    app.include_router(agents.router)
    app.include_router(billing.router)
    app.include_router(retention.router)
    app.include_router(webhooks.router)
    app.include_router(console.router)
    app.add_api_route(
        "/metrics",
        metrics_endpoint(settings.api.metrics_token, open_without_token=settings.metrics_open),
        include_in_schema=False,
    )
    return app


def _celery_sender() -> JobSender:
    # Imported here so that importing the API never configures Celery by side effect.
    from workers.celery_app import job_sender

    return job_sender
