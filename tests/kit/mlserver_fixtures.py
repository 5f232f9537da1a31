"""Real-MLServer fixtures for tests (registered once by tests/conftest.py's `pytest_plugins`).

`mlserver` is module-scoped: one MLServer (parallel_workers=0) on 127.0.0.1 with the iris model
loaded as `iris`, stopped by its process group at teardown. `paced_mlserver` serves the model
`paced`, whose every request holds the event loop for `PACED_SERVICE_MS`: a server whose capacity
is known by design (about 1000 / (service + MLServer's own ~1 ms) req/s) and barely moved by
other work on the machine. `mlserver_factory` starts extra
servers that a test may break (kill mid-run); each is stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.localserver import MLServerProcess, cached_iris, write_paced_model

IRIS = "iris"
START_TIMEOUT_S = 90.0
PACED = "paced"
PACED_SERVICE_MS = 4.0


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding `iris/` (model.joblib + model-settings.json), trained once per session."""
    root = tmp_path_factory.mktemp("models")
    cached_iris(root / IRIS)
    return root


def _stop_by_pid(server: MLServerProcess) -> None:
    pid = server.pid
    server.stop(timeout=10)
    if pid is not None:
        # Belt and braces: the group must be gone even if stop() was interrupted part way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _serving(workdir: Path, models_dir: Path) -> Iterator[MLServerProcess]:
    server = MLServerProcess(workdir, models_dir=models_dir, parallel_workers=0)
    try:
        server.start(timeout=START_TIMEOUT_S)
        yield server
    finally:
        _stop_by_pid(server)


@pytest.fixture(scope="module")
def mlserver(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    yield from _serving(tmp_path_factory.mktemp("mlserver"), iris_model_dir)


@pytest.fixture(scope="module")
def paced_mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("paced-models")
    write_paced_model(models / PACED, PACED_SERVICE_MS)
    yield from _serving(tmp_path_factory.mktemp("mlserver-paced"), models)


@pytest.fixture
def mlserver_factory(
    iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], MLServerProcess]]:
    started: list[MLServerProcess] = []

    def make() -> MLServerProcess:
        server = MLServerProcess(
            tmp_path_factory.mktemp("mlserver-extra"), models_dir=iris_model_dir, parallel_workers=0
        )
        started.append(server)
        server.start(timeout=START_TIMEOUT_S)
        return server

    yield make
    for server in reversed(started):
        _stop_by_pid(server)
