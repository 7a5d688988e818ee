"""Test session: its own PostgreSQL database (migrated once) and its own Redis index.

The environment is set before any Switchboard module is imported, because the Celery app and
the settings cache read it at import time.
"""

from __future__ import annotations

import os
import tempfile
import uuid

_RUN = uuid.uuid4().hex[:8]
TEST_DATABASE = f"switchboard_test_{_RUN}"
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")

os.environ.update(
    ENVIRONMENT="test",
    DATABASE_URL=f"postgresql+psycopg://postgres@{PG_HOST}:5432/{TEST_DATABASE}",
    REDIS_URL=f"redis://{REDIS_HOST}:6379/{TEST_REDIS_DB}",
    CELERY_BROKER_URL=f"redis://{REDIS_HOST}:6379/{TEST_REDIS_DB}",
    CELERY_RESULT_BACKEND=f"redis://{REDIS_HOST}:6379/{TEST_REDIS_DB}",
    LOG_FORMAT="json",
    LOG_LEVEL=os.environ.get("TEST_LOG_LEVEL", "WARNING"),
    AUTH_KEY_DIR=tempfile.mkdtemp(prefix="switchboard-test-keys-"),
    AUTH_ISSUER="https://switchboard.test",
    AUTH_AUDIENCE="switchboard-test",
    # Production cost is 12 (settings refuse less there); tests hash thousands of times.
    IDENTITY_BCRYPT_COST="4",
    # Every in-process request comes from 127.0.0.1; tests of the limit set their own.
    IDENTITY_LOGIN_IP_MAX_ATTEMPTS="1000000",
)
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

pytest_plugins = [
    "tests.support.database",
    "tests.support.redis",
    "tests.support.app",
    "tests.support.worker",
    "tests.support.auth",
    "tests.support.vault",
]
