"""The whole system on RabbitMQ: an API process, beat and three workers with CELERY_BROKER_URL
on a vhost of this module's own, Redis a private server (as in test_faults.py).

The keeper consumes `maintenance`, `default` and, unless a test lends it to a victim, `runs`;
it serves /metrics. The two victims wait on the idle queue until a test gives one of them
`runs` and kills it. RabbitMQ hands a killed worker's unacknowledged messages back as soon as
its connection closes: a run the victim had not started yet is completed by the keeper, a run
it had started is left to the sweep by the keeper, which finds it running.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from celery import Celery
from celery.utils.nodenames import host_format
from httpx import AsyncClient
from redis.asyncio import Redis

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.jobs import Job
from switchboard.ops.service import HEARTBEAT_KEY
from switchboard.settings import Settings
from tests.e2e.conftest import chat, sign_up
from tests.support.metrics import exposed, sample
from tests.support.processes import free_port
from tests.support.rabbitmq import RabbitMQ, Vhost, on_rabbitmq
from tests.support.redis import PrivateRedis
from tests.support.sse import Frame, collect, frames, read_until
from tests.support.worker import (
    ApiProcess,
    WorkerProcess,
    start_beat,
    start_worker,
    stop_beat,
    stop_workers,
    take_queue,
    wait_until_ready,
)
from tests.support.worker_app import IDLE_QUEUE
from workers.celery_app import QUEUES, create_celery
from workers.sender import CeleryJobSender

# 18 s of reply: still going when the test kills its worker, however loaded the machine.
WORDS = " ".join(f"word{index}" for index in range(300))
TOKEN_DELAY_MS = 60


@pytest.fixture(scope="module")
def vhost(rabbitmq: RabbitMQ) -> Vhost:
    return rabbitmq.vhost()


@pytest.fixture(scope="module")
def system_env(vhost: Vhost, private_redis: PrivateRedis) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": vhost.url,
        "REDIS_URL": private_redis.url,
        "CELERY_RESULT_BACKEND": private_redis.url,
        "RUNS_LEASE_SECONDS": "2",
        "RUNS_SWEEP_SECONDS": "1",
        "BEAT_HEARTBEAT_SECONDS": "1",
        "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
        "LOG_LEVEL": "INFO",
    }


@dataclass
class System:
    api: ApiProcess
    keeper: WorkerProcess
    victims: list[WorkerProcess]


@pytest.fixture(scope="module")
def system(
    committed_keys: KeySnapshot,
    system_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """Every process started at once, then waited for."""
    directory = tmp_path_factory.mktemp("rabbitmq")
    port = free_port()
    api = ApiProcess(directory / "api.log", system_env)
    beat = start_beat(directory / "beat.log", system_env)
    keeper = start_worker(
        directory,
        pool="threads",
        concurrency=4,
        queues="runs,maintenance,default",
        env={**system_env, "CELERY_METRICS_PORT": str(port)},
    )
    keeper.metrics_url = f"http://127.0.0.1:{port}/metrics"
    victims = [
        start_worker(directory, pool="threads", concurrency=4, queues=IDLE_QUEUE, env=system_env)
        for _ in range(2)
    ]
    try:
        for worker in (keeper, *victims):
            wait_until_ready(worker)
        api.wait()
        yield System(api, keeper, victims)
    finally:
        api.terminate()
        for victim in victims:
            if victim.process.poll() is None:
                victim.process.send_signal(signal.SIGCONT)  # a failed test may have stopped it
        stop_workers([keeper, *victims])
        stop_beat(beat)
        api.stop()


@pytest.fixture(scope="module")
def amqp_app(
    settings: Settings,
    celery_app: Celery,
    vhost: Vhost,
    private_redis: PrivateRedis,
) -> Iterator[Celery]:
    """The production app on the vhost, in this process: remote control and sending. Celery
    reads CELERY_BROKER_URL before its configuration, so the variable names the vhost for the
    module; the session's settings and app, made first, stay on Redis."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CELERY_BROKER_URL", vhost.url)
        app = create_celery(on_rabbitmq(settings, vhost, redis_url=private_redis.url))
        celery_app.set_current()
        yield app
        app.close()


@pytest.fixture
async def api(system: System) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(base_url=system.api.base, timeout=60) as client:
        yield client


@pytest.fixture
async def redis(private_redis: PrivateRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def until(read: Callable[[], float], expected: float, what: str) -> None:
    """Reads (in a thread) until ``read`` gives ``expected``, for at most 10 s."""
    deadline = time.monotonic() + 10
    while (value := await asyncio.to_thread(read)) != expected:
        assert time.monotonic() < deadline, f"{what}: {value}, not {expected}, after 10 s"
        await asyncio.sleep(0.05)


async def lend_runs(app: Celery, system: System, vhost: Vhost, victim: WorkerProcess) -> None:
    """``runs`` moves from the keeper to ``victim``: it alone takes the next run. A worker
    answers a remote control before it acts on it: the broker says when it has."""
    keeper = host_format(system.keeper.hostname)
    replies = app.control.cancel_consumer("runs", destination=[keeper], reply=True, timeout=10)
    assert replies == [{keeper: {"ok": "no longer consuming from runs"}}], replies
    await until(lambda: vhost.consumers("runs"), 0, "consumers after the keeper let go")
    take_queue(app, victim)
    await until(lambda: vhost.consumers("runs"), 1, "consumers once the victim took runs")


def metric(system: System, name: str, **labels: str) -> float:
    assert system.keeper.metrics_url is not None
    return sample(httpx.get(system.keeper.metrics_url, timeout=5).text, name, **labels) or 0


async def test_a_chat_streams_to_its_end(api: AsyncClient, system: System) -> None:
    user = await sign_up(api)
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": "hello over rabbitmq"}, headers=user
    ) as response:
        assert response.status_code == 200, await response.aread()
        received = await collect(response)

    kinds = [frame.event for frame in received]
    assert kinds[:2] == ["run.queued", "run.started"]
    assert kinds[-2:] == ["message.completed", "run.completed"]
    assert [frame.id for frame in received] == list(range(1, len(received) + 1))
    said = "".join(frame.data["delta"] for frame in received if frame.event == "message.delta")
    assert said == "hello over rabbitmq"

    ready = (await api.get("/health/ready")).json()
    assert ready["status"] == "ok"
    assert ready["checks"]["broker"]["ok"] is True


async def test_the_broker_holds_quorum_runs_countdowns_and_beat_runs_on_redis(
    amqp_app: Celery, system: System, vhost: Vhost, redis: Redis
) -> None:
    types = vhost.queue_types()
    assert types["runs"] == "quorum"
    assert {types[name] for name in set(QUEUES) - {"runs"}} == {"classic"}
    # Celery's delayed delivery: countdowns wait in the broker, not in a worker.
    assert types["celery_delayed_0"] == "quorum"

    key = f"tests:mark:{uuid.uuid4().hex}"
    sent = time.monotonic()
    await CeleryJobSender(amqp_app).send(
        [Job("tests.mark", (key,), queue="default", countdown=0.3)]
    )
    async with asyncio.timeout(15):
        while not await redis.exists(key):
            await asyncio.sleep(0.05)
    assert time.monotonic() - sent >= 1  # sub-second countdowns wait one whole second

    # Beat sends through RabbitMQ and keeps its lock and schedule on REDIS_URL.
    assert await redis.exists("switchboard:redbeat::lock")
    async with asyncio.timeout(15):
        while not await redis.hget(HEARTBEAT_KEY, "count"):
            await asyncio.sleep(0.1)

    assert system.keeper.metrics_url is not None
    worker_metrics = httpx.get(system.keeper.metrics_url, timeout=5).text
    assert exposed(worker_metrics, "celery_queue_length", queue="runs") == 0
    assert exposed(worker_metrics, "celery_queue_length", queue="maintenance") >= 0


async def test_a_run_whose_worker_died_before_starting_it_is_redelivered_and_completes(
    api: AsyncClient, amqp_app: Celery, system: System, vhost: Vhost
) -> None:
    victim = system.victims[0]
    await lend_runs(amqp_app, system, vhost, victim)
    victim.process.send_signal(signal.SIGSTOP)
    user = await sign_up(api)

    accepted = await chat(api, user, "back again please")
    # Confirmed by the broker before the API answered; taken by the stopped victim, unacked.
    await until(lambda: vhost.ready("runs"), 0, "ready once the victim took it")
    victim.process.kill()
    victim.process.wait()
    await until(lambda: vhost.ready("runs"), 1, "ready once the victim died")
    take_queue(amqp_app, system.keeper)

    async with asyncio.timeout(30), api.stream("GET", accepted["stream_url"]) as response:
        received = await collect(response)
    assert received[-1].event == "run.completed", [frame.event for frame in received]
    said = "".join(frame.data["delta"] for frame in received if frame.event == "message.delta")
    assert said == "back again please"
    run = (await api.get(f"/api/v1/runs/{accepted['run_id']}", headers=user)).json()
    assert run["status"] == "succeeded"


async def test_a_run_whose_worker_died_mid_run_is_not_run_twice_and_fails(
    api: AsyncClient, amqp_app: Celery, system: System, vhost: Vhost
) -> None:
    victim = system.victims[1]
    await lend_runs(amqp_app, system, vhost, victim)
    user = await sign_up(api)
    done = metric(system, "celery_tasks_total", task="runs.execute", state="succeeded")
    started = metric(system, "runs_started_total", agent="triage")

    received: list[Frame] = []
    async with api.stream(
        "POST", "/api/v1/chat/stream", json={"message": WORDS}, headers=user
    ) as response:
        events = frames(response)
        await read_until(events, received, 3)
        victim.process.kill()
        victim.process.wait()
        # Back at once, not after a visibility timeout.
        await until(lambda: vhost.ready("runs"), 1, "ready once the victim died")
        take_queue(amqp_app, system.keeper)
        async with asyncio.timeout(60):
            async for frame in events:
                received.append(frame)

    assert received[-1].event == "run.failed", [frame.event for frame in received]
    assert received[-1].data["error"]["code"] == "worker_lost"
    assert [frame.id for frame in received] == list(range(1, len(received) + 1))
    assert [frame.event for frame in received].count("run.started") == 1
    # The keeper took the message and left the run, still running, to the sweep.
    await until(
        lambda: metric(system, "celery_tasks_total", task="runs.execute", state="succeeded"),
        done + 1,
        "runs.execute succeeded on the keeper",
    )
    assert metric(system, "runs_started_total", agent="triage") == started
    run = (await api.get(f"/api/v1/runs/{received[0].data['run_id']}", headers=user)).json()
    assert (run["status"], run["error"]["code"]) == ("failed", "worker_lost")
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=user)
    ).json()
    assert [message["role"] for message in conversation["messages"]] == ["user"]
