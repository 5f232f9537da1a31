"""Fixtures and markers shared by the harness's own tests.

- `sim`: one simulated cluster from profiles/sim.yaml (no MLServer) for the whole session (one per
  xdist worker). Tests that use it work in their own namespaces and clear injected faults (see
  `tests.kit.sim_fixtures.kube_against`); folders and modules that need another shape of cluster
  define their own `sim`, which overrides this one.
- the real MLServer and Triton fixtures (tests/kit/mlserver_fixtures.py, tests/kit/triton_fixtures.py),
  registered once here so that every folder shares one server of each per worker.

Tests live in folders by topic (sim, kube, rules, gpu, load, report, profiles, providers, runs, house),
each with a conftest for what its tests share; what several folders share is in tests/kit/.
- `fast` marker: the modules of pure functions and in-process checks (no simulated cluster, no
  MLServer, no kind/helm fakes); `make test-fast` runs exactly these, in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.sim_fixtures import started_sim

pytest_plugins = ["tests.kit.mlserver_fixtures", "tests.kit.triton_fixtures"]

# Modules whose tests run in-process on data: the fast lane. A module that starts a cluster, an
# MLServer or a subprocess of the harness does not belong here.
FAST_MODULES = frozenset({
    "test_checks_placement.py", "test_checks_slo.py", "test_config.py", "test_gpu_checks.py",
    "test_gpu_result.py", "test_k8s_rules.py", "test_kube_stuck.py", "test_load_unit.py",
    "test_report_schema.py", "test_sim_api_patch.py", "test_gpu_use.py", "test_gpu_sharing.py",
})
# Tests in those modules that start the harness in a subprocess: correct, but seconds each.
NOT_FAST = frozenset({"test_cli_exit_code_2_without_traceback", "test_two_worker_processes_share_the_rate"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).name in FAST_MODULES and getattr(item, "originalname", item.name) not in NOT_FAST:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("sim"))
