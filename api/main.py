"""The application factory: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.errors import install_error_handlers
from api.metrics import metrics_endpoint
from api.middleware import BodySizeLimitMiddleware, MetricsMiddleware, RequestContextMiddleware
from api.routes import agents, auth, billing, conversations, health, identity, retention, runs
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
from switchboard.mail.sealing import MailSealer
from switchboard.runs.admission import Admission, StreamSlots
from switchboard.runs.events import EventPublisher
from switchboard.runs.hub import EventHub
from switchboard.settings import Settings, settings_or_exit


def create_app(settings: Settings | None = None, *, job_sender: JobSender | None = None) -> FastAPI:
    settings = settings or settings_or_exit()
    configure_logging(settings.log, settings.environment, service="api")

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
            app.state.notifier = LogNotifier(
                include_link=settings.environment.allows_insecure_defaults
            )
            # With SMTP configured, each request's notifier seals mail jobs with this.
            app.state.mail_sealer = (
                MailSealer.for_settings(settings) if settings.smtp.configured else None
            )
            app.state.agents = create_agent_runtime(settings.openai, settings.offline).registry
            app.state.event_hub = EventHub(resources.redis)
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

    app = FastAPI(
        title="Switchboard",
        version=version("switchboard"),
        summary="Backend for AI-agent chat products.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.api.max_body_bytes)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
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
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


def _celery_sender() -> JobSender:
    # Imported here so that importing the API never configures Celery by side effect.
    from workers.celery_app import job_sender

    return job_sender
