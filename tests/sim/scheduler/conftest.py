"""Node-side controllers only (tests/kit/scheduler_sim.py), one cluster per test module, with namespace `sched`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kit.scheduler_sim import NS, Sim, start_sim


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s, stop = start_sim(tmp_path_factory.mktemp("sim"))
    try:
        s.core.create_namespace({"metadata": {"name": NS}})
        yield s
    finally:
        stop()
