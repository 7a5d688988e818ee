"""docker-compose.yml, parsed (Docker is not needed): nothing is published beyond loopback,
Redis asks every client for the password the application's URLs carry, and the workers consume
every queue as the Kubernetes manifests do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.test_manifests import EXPECTED_WORKERS, celery_queues

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REDIS_URLS = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
# ${NAME:-default}, ${NAME-default} or ${NAME}: what compose substitutes from the environment.
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def interpolated(value: str, env: dict[str, str] | None = None) -> str:
    """The value compose would use, with ``env`` as the shell's environment."""
    env = env or {}
    return VARIABLE.sub(lambda m: env.get(m[1], m[2] or ""), value)


def host_ips(port: str | dict[str, Any]) -> str | None:
    """The host address a published port binds to; None means every interface."""
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip")
    parts = str(port).rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def test_every_published_port_is_bound_to_loopback() -> None:
    published = {
        name: service.get("ports", []) for name, service in services().items() if "ports" in service
    }
    assert {"postgres", "redis", "api", "flower"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert host_ips(port) == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    # The parser itself: an unbound port is caught.
    assert host_ips("5432:5432") is None
    assert host_ips({"target": 5432, "published": 5432}) is None


def redis_password(env: dict[str, str] | None = None) -> str:
    command = [interpolated(str(part), env) for part in services()["redis"]["command"]]
    assert command[0] == "redis-server"
    return command[command.index("--requirepass") + 1]


def test_redis_requires_the_password_the_application_uses() -> None:
    assert redis_password(), "redis-server has an empty requirepass"
    for env in ({}, {"REDIS_PASSWORD": "chosen-by-the-developer"}):
        password = redis_password(env)
        for name, service in services().items():
            for variable in REDIS_URLS:
                url = service.get("environment", {}).get(variable)
                if url is None:
                    continue
                assert urlsplit(interpolated(url, env)).password == password, (name, variable)
        healthcheck_env = services()["redis"]["environment"]
        assert interpolated(healthcheck_env["REDISCLI_AUTH"], env) == password


def test_every_application_service_talks_to_the_protected_redis() -> None:
    users = [
        name
        for name, service in services().items()
        if "REDIS_URL" in service.get("environment", {})
    ]
    assert {"api", "worker", "runs", "webhooks", "beat", "flower", "migrate"} <= set(users)


def test_postgres_password_is_the_one_the_application_uses() -> None:
    for env in ({}, {"POSTGRES_PASSWORD": "chosen-by-the-developer"}):
        expected = interpolated(services()["postgres"]["environment"]["POSTGRES_PASSWORD"], env)
        url = interpolated(services()["api"]["environment"]["DATABASE_URL"], env)
        assert urlsplit(url).password == expected


def test_every_queue_has_one_worker_like_the_manifests() -> None:
    """Each worker service consumes what the Kubernetes worker of the same queues does, with
    the same pool; together they consume every queue exactly once."""
    consumed: list[str] = []
    expected = {spec["queues"]: spec["args"] for spec in EXPECTED_WORKERS.values()}
    for name, service in services().items():
        command = [str(part) for part in service.get("command", [])]
        if "worker" not in command:
            continue
        [queues] = [arg.split("=", 1)[1] for arg in command if arg.startswith("--queues=")]
        assert tuple(queues.split(",")) in expected, name
        for arg in expected[tuple(queues.split(","))]:
            assert arg in command, f"{name}: {arg}"
        consumed += queues.split(",")
    assert sorted(consumed) == sorted(celery_queues()), "every queue consumed exactly once"
