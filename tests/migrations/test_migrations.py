"""Migrations run both ways on a fresh database and match the models exactly."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from switchboard.kit.db import database_url
from switchboard.models import Base
from switchboard.settings import Settings
from tests.support.database import alembic_config, create_database, drop_database


@pytest.fixture
def fresh_database(settings: Settings) -> Iterator[str]:
    url = database_url(str(settings.database.url))
    fresh = url.set(database=f"{url.database}_mig_{uuid.uuid4().hex[:6]}")
    rendered = fresh.render_as_string(hide_password=False)
    create_database(rendered)
    yield rendered
    drop_database(rendered)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_database: str) -> None:
    config = alembic_config(fresh_database)

    command.upgrade(config, "head")
    assert set(Base.metadata.tables) <= _tables(fresh_database)

    command.downgrade(config, "base")
    assert _tables(fresh_database) == {"alembic_version"}

    command.upgrade(config, "head")
    assert set(Base.metadata.tables) <= _tables(fresh_database)


def test_models_and_migrations_agree(migrated_database: str) -> None:
    engine = create_engine(database_url(migrated_database))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "a model changed without a migration: alembic revision --autogenerate"


def test_migration_files_are_named_by_date_and_slug() -> None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    for revision in script.walk_revisions():
        filename = revision.path.rsplit("/", 1)[-1]
        assert re.fullmatch(r"\d{8}_\d{4}_[a-z0-9_]+\.py", filename), filename
        assert revision.revision == filename[:13], filename


def test_constraint_names_follow_the_convention(migrated_database: str) -> None:
    url = database_url(migrated_database)
    conninfo = psycopg.conninfo.make_conninfo(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password or None,
        dbname=url.database,
    )
    with psycopg.connect(conninfo) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                " WHERE n.nspname = 'public' AND c.conrelid <> 'alembic_version'::regclass"
            )
        ]
    assert names
    assert all(name.split("_")[0] in {"pk", "fk", "uq", "ck"} for name in names), names
