"""One system for every module here, started once for the package: the two API processes of
tests/e2e/conftest.py and one runs worker. A module that needs its runs worker configured
otherwise, or none at all, lives one level up: two workers at once would share the runs
queue, and either could take a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.worker import ApiProcess, WorkerProcess, runs_worker_process

# Each word of a reply waits this long, so that a run of tens of words is still going when a
# test acts on it (tests/e2e/shared/test_turns.py).
TOKEN_DELAY_MS = 30


@pytest.fixture(scope="package", autouse=True)
def system_worker(
    started_apis: tuple[ApiProcess, ApiProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The runs worker, as production runs them: the runs queue on a thread pool, serving
    /metrics. Started after the API processes, so that they all start up at once."""
    # The cancel flag is read rarely, so a run cancelled within the tests' deadlines was
    # stopped by its cancel notice.
    with runs_worker_process(
        tmp_path_factory.mktemp("runs-worker"),
        metrics=True,
        env={
            "OFFLINE_MODEL_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS),
            "RUNS_CANCEL_POLL_SECONDS": "120",
        },
    ) as process:
        yield process


@pytest.fixture(scope="package")
def runs_worker(system_worker: WorkerProcess) -> str:
    """The address of the runs worker's /metrics."""
    assert system_worker.metrics_url is not None
    return system_worker.metrics_url
