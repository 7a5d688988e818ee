"""The engine keeps the values a statement was given out of its errors (and so out of logs)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from switchboard.kit.db import create_engine
from switchboard.settings import Settings

SECRET = "password-of-a-user-5b1e"


@pytest.mark.usefixtures("migrated_database")
async def test_a_failed_statement_does_not_quote_its_parameters(settings: Settings) -> None:
    engine = create_engine(settings.database)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(
                    text("SELECT CAST(:value AS text), 1 / 0"), {"value": SECRET}
                )
    finally:
        await engine.dispose()

    assert "division by zero" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert SECRET not in repr(failed.value)
