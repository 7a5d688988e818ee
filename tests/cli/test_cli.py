from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.kit.db import database_url
from switchboard.settings import Settings
from tests.support.database import drop_database
from tests.support.processes import free_port
from tests.support.rabbitmq import RabbitMQ

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_config_check_prints_settings_with_secrets_masked() -> None:
    result = runner.invoke(app, ["config", "check"], env={"FLOWER_PASSWORD": "hunter2-hunter2"})

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["environment"] == "test"
    assert "hunter2" not in result.output
    assert printed["flower"]["password"] == "**********"


def test_config_check_names_an_invalid_variable() -> None:
    result = runner.invoke(app, ["config", "check"], env={"REDIS_MAX_CONNECTIONS": "-1"})

    assert result.exit_code == 2
    assert "REDIS_MAX_CONNECTIONS" in result.output


def test_config_example_matches_the_committed_file() -> None:
    result = runner.invoke(app, ["config", "example"])
    assert result.output == (ROOT / ".env.example").read_text()


def test_config_urls_prints_every_process() -> None:
    result = runner.invoke(app, ["config", "urls"])
    for name in ("API", "Ready", "Metrics", "Flower"):
        assert name in result.output


def test_services_check_passes_when_everything_answers() -> None:
    result = runner.invoke(app, ["services", "check"])
    assert result.exit_code == 0, result.output


def test_services_check_says_in_one_line_how_to_start_what_is_down() -> None:
    closed = free_port()
    result = runner.invoke(
        app, ["services", "check"], env={"REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    )

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert f"Redis is not reachable at 127.0.0.1:{closed}" in lines[0]
    assert "docker compose up -d postgres redis" in lines[0]
    assert "REDIS_URL=redis://:switchboard-dev@127.0.0.1:6379/0" in lines[0]
    assert "PostgreSQL" not in lines[0].split(":")[0]


def test_services_check_reports_an_unreachable_postgres() -> None:
    closed = free_port()
    result = runner.invoke(
        app,
        ["services", "check"],
        env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/x"},
    )
    assert result.exit_code == 1
    assert f"PostgreSQL is not reachable at 127.0.0.1:{closed}" in result.output


def test_services_check_reaches_a_rabbitmq_broker(rabbitmq: RabbitMQ) -> None:
    vhost = rabbitmq.vhost()
    result = runner.invoke(app, ["services", "check"], env={"CELERY_BROKER_URL": vhost.url})

    assert result.exit_code == 0, result.output
    assert "RabbitMQ" in result.output


def test_services_check_says_how_to_start_rabbitmq() -> None:
    closed = free_port()
    result = runner.invoke(
        app,
        ["services", "check"],
        env={"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed}//"},
    )

    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert f"RabbitMQ (Celery broker) is not reachable at 127.0.0.1:{closed}" in line
    assert "service rabbitmq-server start" in line
    assert "docker compose" not in line  # PostgreSQL and Redis answer


@pytest.fixture
def new_database_url(settings: Settings) -> str:
    url = database_url(str(settings.database.url))
    fresh = url.set(database=f"switchboard_cli_{uuid.uuid4().hex[:8]}")
    rendered = fresh.render_as_string(hide_password=False)
    yield rendered
    drop_database(rendered)


def test_db_ensure_creates_the_database_once(new_database_url: str) -> None:
    env = {"DATABASE_URL": new_database_url}
    first = runner.invoke(app, ["db", "ensure"], env=env)
    second = runner.invoke(app, ["db", "ensure"], env=env)

    assert first.exit_code == 0, first.output
    assert first.output.startswith("created database switchboard_cli_")
    assert second.output.strip() == "database exists"
