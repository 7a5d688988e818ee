"""The worker runtime builds what tasks use once per process, and afresh in a forked child."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from redis.asyncio import Redis

import workers.runtime
from switchboard.billing.errors import BillingNotConfiguredError
from switchboard.kit.jobs import Job
from switchboard.runs.events import EventType, stream_key
from switchboard.settings import Settings
from workers.runtime import WorkerRuntime


class NoSender:
    async def send(self, jobs: Sequence[Job]) -> list[str]:
        raise AssertionError("nothing here enqueues")


def _with(settings: Settings, **sections: dict[str, Any]) -> Settings:
    updates = {
        name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()
    }
    return settings.model_copy(update=updates)


@pytest.fixture
def make_runtime() -> Iterator[Callable[[Settings], WorkerRuntime]]:
    started: list[WorkerRuntime] = []

    def make(settings: Settings) -> WorkerRuntime:
        runtime = WorkerRuntime(settings, NoSender())
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[float]:
    """Counts the calls of ``workers.runtime.<name>``, each slow enough for threads to meet."""
    calls: list[float] = []
    build = getattr(workers.runtime, name)

    def counted(*args: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(0.05)
        return build(*args)

    monkeypatch.setattr(workers.runtime, name, counted)
    return calls


def test_a_process_builds_each_long_lived_object_once(
    settings: Settings,
    make_runtime: Callable[[Settings], WorkerRuntime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = {
        name: _counted(monkeypatch, name)
        for name in ("StripeGateway", "create_agent_runtime", "create_key_store")
    }
    runtime = make_runtime(settings)
    names = ("resources", "publisher", "cancel_notices", "agents", "gateway", "key_store")

    def everything() -> tuple[object, ...]:
        return tuple(getattr(runtime, name) for name in names)

    # Pool threads asking at once, as the first tasks of a thread-pool worker do.
    with ThreadPoolExecutor(8) as pool:
        seen = [future.result() for future in [pool.submit(everything) for _ in range(8)]]
    seen.append(everything())

    for index, name in enumerate(names):
        assert len({id(objects[index]) for objects in seen}) == 1, name
    assert {name: len(calls) for name, calls in counts.items()} == dict.fromkeys(counts, 1)


async def test_the_publisher_keeps_buffers_as_the_runs_settings_say(
    settings: Settings, make_runtime: Callable[[Settings], WorkerRuntime], redis: Redis
) -> None:
    runtime = make_runtime(_with(settings, runs={"buffer_ttl_seconds": 123}))
    run_id = str(uuid.uuid4())

    runtime.run(runtime.publisher.publish(run_id, EventType.queued))

    assert 100 < await redis.ttl(stream_key(run_id)) <= 123


def test_a_worker_without_stripe_settings_runs_everything_else(
    settings: Settings, make_runtime: Callable[[Settings], WorkerRuntime]
) -> None:
    runtime = make_runtime(_with(settings, stripe={"api_key": None}))

    assert runtime.run(runtime.resources.redis.ping())
    with pytest.raises(BillingNotConfiguredError):
        _ = runtime.gateway
    with pytest.raises(BillingNotConfiguredError):  # asked again, not a cached failure
        _ = runtime.gateway
    assert runtime.publisher is runtime.publisher


def test_a_forked_child_builds_its_own(
    settings: Settings, make_runtime: Callable[[Settings], WorkerRuntime]
) -> None:
    runtime = make_runtime(settings)
    names = ("loop", "resources", "publisher", "cancel_notices", "agents", "gateway", "key_store")
    inherited = {name: getattr(runtime, name) for name in names}
    assert runtime.run(runtime.resources.redis.ping())

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-ups
        try:
            shared = [name for name in names if getattr(runtime, name) is inherited[name]]
            works = runtime.run(runtime.resources.redis.ping())
            report = f"shared={','.join(shared)} works={works}"
        except BaseException as exc:
            report = repr(exc)
        finally:
            os.write(write, report.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)

    assert report == "shared= works=True"
    # The parent's are untouched by its child.
    assert [name for name in names if getattr(runtime, name) is not inherited[name]] == []
    assert runtime.run(runtime.resources.redis.ping())


def test_stop_closes_and_a_later_task_starts_again(
    settings: Settings, make_runtime: Callable[[Settings], WorkerRuntime]
) -> None:
    runtime = make_runtime(settings)
    first_loop, first_publisher = runtime.loop, runtime.publisher

    runtime.stop()

    assert first_loop.is_closed()
    assert runtime.loop is not first_loop
    assert runtime.publisher is not first_publisher
    assert runtime.run(runtime.resources.redis.ping())
