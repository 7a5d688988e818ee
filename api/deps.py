"""FastAPI dependencies, exposed as ``Annotated`` aliases for route signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.jobs import JobSender
from switchboard.kit.resources import Resources
from switchboard.kit.uow import UnitOfWork
from switchboard.settings import Settings


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_job_sender(request: Request) -> JobSender:
    sender: JobSender = request.app.state.job_sender
    return sender


AppResources = Annotated[Resources, Depends(get_resources)]


def get_settings(resources: AppResources) -> Settings:
    return resources.settings


def get_redis(resources: AppResources) -> Redis:
    return resources.redis


async def get_unit_of_work(
    resources: AppResources, sender: Annotated[JobSender, Depends(get_job_sender)]
) -> AsyncIterator[UnitOfWork]:
    # Commits (and sends buffered jobs) when the route returns, before the response is sent,
    # so a failed commit is answered as an error rather than after a 2xx went out.
    async with UnitOfWork(resources.sessionmaker, sender) as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]


def get_session(uow: UoW) -> AsyncSession:
    return uow.session


AppSettings = Annotated[Settings, Depends(get_settings)]
RedisClient = Annotated[Redis, Depends(get_redis)]
DbSession = Annotated[AsyncSession, Depends(get_session)]
