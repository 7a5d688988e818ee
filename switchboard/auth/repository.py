"""Queries of the signing-key table. The key material itself lives in the key store."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import SigningKey

# pg_advisory_xact_lock key for key-set transitions ("sbkeys" in ASCII).
KEYS_LOCK_ID = 0x7362_6B65_7973


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_key_set(self) -> None:
        """Serialises key-set transitions until the transaction ends."""
        await self.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": KEYS_LOCK_ID})

    async def keys(self) -> list[SigningKey]:
        """Every key, oldest first."""
        return list(
            (await self.session.scalars(select(SigningKey).order_by(SigningKey.created_at))).all()
        )

    async def add_key(self, key: SigningKey) -> None:
        self.session.add(key)
        await self.session.flush()

    async def save(self) -> None:
        """Writes the changes made to loaded keys now, so the unique indexes check each step."""
        await self.session.flush()
