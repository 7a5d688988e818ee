"""Test session: its own PostgreSQL database (migrated once) and its own Redis index.

The environment is set before any Switchboard module is imported, because the Celery app and
the settings cache read it at import time.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from urllib.parse import quote

_RUN = uuid.uuid4().hex[:8]
TEST_DATABASE = f"switchboard_test_{_RUN}"
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
# Empty (CI): no password. docker compose's services ask for one (docs/development.md).
PG_PASSWORD = os.environ.get("TEST_PG_PASSWORD", "")
REDIS_PASSWORD = os.environ.get("TEST_REDIS_PASSWORD", "")
PG_USER = f"postgres:{quote(PG_PASSWORD, safe='')}" if PG_PASSWORD else "postgres"
REDIS_AUTH = f":{quote(REDIS_PASSWORD, safe='')}@" if REDIS_PASSWORD else ""
TEST_REDIS_URL = f"redis://{REDIS_AUTH}{REDIS_HOST}:6379/{TEST_REDIS_DB}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Every process of the session (workers included) calls the local Stripe of tests/billing.
STRIPE_PORT = _free_port()
STRIPE_WEBHOOK_SECRET = "whsec_switchboard_test_secret"
# Workers send mail to the tests' SMTP server (tests/mail); the in-process API has no SMTP
# settings, so its reset links go to the log unless a test builds an app with them.
SMTP_PORT = _free_port()
WORKER_ENV = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(SMTP_PORT), "SMTP_SECURITY": "none"}

os.environ.update(
    ENVIRONMENT="test",
    DATABASE_URL=f"postgresql+psycopg://{PG_USER}@{PG_HOST}:5432/{TEST_DATABASE}",
    REDIS_URL=TEST_REDIS_URL,
    CELERY_BROKER_URL=TEST_REDIS_URL,
    CELERY_RESULT_BACKEND=TEST_REDIS_URL,
    LOG_FORMAT="json",
    LOG_LEVEL=os.environ.get("TEST_LOG_LEVEL", "WARNING"),
    AUTH_KEY_DIR=tempfile.mkdtemp(prefix="switchboard-test-keys-"),
    AUTH_ISSUER="https://switchboard.test",
    AUTH_AUDIENCE="switchboard-test",
    # Production cost is 12 (settings refuse less there); tests hash thousands of times.
    IDENTITY_BCRYPT_COST="4",
    # Every in-process request comes from 127.0.0.1; tests of the limit set their own.
    IDENTITY_LOGIN_IP_MAX_ATTEMPTS="1000000",
    IDENTITY_LOGIN_GLOBAL_FAILURES_PER_MINUTE="1000000",
    # Likewise the unauthenticated endpoints' limits (tests/identity/test_throttles.py).
    **{
        f"IDENTITY_{action}_{scope}": "1000000"
        for action in ("REGISTER", "FORGOT", "RESET", "REFRESH", "ACCEPT")
        for scope in ("IP_PER_HOUR", "GLOBAL_PER_MINUTE")
    },
    STRIPE_API_KEY="sk_test_switchboard",
    STRIPE_API_BASE=f"http://127.0.0.1:{STRIPE_PORT}",
    STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
    STRIPE_TIMEOUT_SECONDS="2",
    BILLING_PLAN_PRICES=json.dumps(
        {
            "starter": {"seat": "price_starter_seat", "usage": "price_tokens"},
            "team": {"seat": "price_team_seat", "usage": "price_tokens"},
            "business": {"seat": "price_business_seat", "usage": "price_tokens"},
        }
    ),
)
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

pytest_plugins = [
    "tests.support.database",
    "tests.support.redis",
    "tests.support.app",
    "tests.support.worker",
    "tests.support.auth",
    "tests.support.members",
    "tests.support.vault",
    "tests.support.openai_server",
    "tests.support.rabbitmq",
]
