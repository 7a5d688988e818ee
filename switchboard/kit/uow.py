"""The unit of work: one session, one transaction, and the jobs it will send.

A request owns it; request services receive its session and job buffer and never commit. A
service whose outcome must stick even when the request fails (a refused login's record) writes
it in a short transaction of its own, from ``sessionmaker``.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer, JobSender
from switchboard.kit.tracing import span


class UnitOfWork:
    def __init__(self, sessionmaker: SessionMaker, sender: JobSender) -> None:
        self._sessionmaker = sessionmaker
        self._sender = sender
        self.jobs = JobBuffer()
        self._session: AsyncSession | None = None

    @property
    def sessionmaker(self) -> SessionMaker:
        """Where ``session`` came from, for a service's writes that commit on their own."""
        return self._sessionmaker

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessionmaker()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if exc_type is None:
                with span("uow.commit"):
                    await session.commit()
            else:
                await session.rollback()
        except BaseException:
            self.jobs.drop()
            await self.jobs.rolled_back()
            raise
        finally:
            await session.close()
            self._session = None
        if exc_type is None:
            with span("uow.send_jobs"):
                await self.jobs.flush(self._sender)
        else:
            self.jobs.drop()
            await self.jobs.rolled_back()
