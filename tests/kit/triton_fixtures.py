"""Real-Triton fixtures (registered once by tests/conftest.py's `pytest_plugins`).

`real_triton` is session-scoped: one real tritonserver (nvidia-pytriton's binary, started by
`harness.localserver.tritonserver`) per test process, with the add/sub model loaded as `simple`;
tests that load more models unload them. Starting it takes a few seconds, so tests share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.localserver.triton_models import write_add_sub_model
from harness.localserver.tritonserver import TritonServerProcess, find_tritonserver

START_TIMEOUT_S = 90.0
SIMPLE = "simple"


@pytest.fixture(scope="session")
def add_sub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_add_sub_model(tmp_path_factory.mktemp("triton-models") / SIMPLE)


@pytest.fixture(scope="session")
def real_triton(tmp_path_factory: pytest.TempPathFactory, add_sub_dir: Path) -> Iterator[TritonServerProcess]:
    find_tritonserver()  # a missing wheel fails here with its one-line reason (it is in the test extra)
    server = TritonServerProcess(tmp_path_factory.mktemp("tritonserver"))
    server.start(timeout=START_TIMEOUT_S)
    try:
        server.load_model(SIMPLE, add_sub_dir, timeout=START_TIMEOUT_S)
        yield server
    finally:
        server.stop()
