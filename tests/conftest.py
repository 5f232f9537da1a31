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

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.order import balanced_order
from tests.kit.sim_fixtures import started_sim

pytest_plugins = ["tests.kit.mlserver_fixtures", "tests.kit.triton_fixtures", "tests.kit.fork_daemon"]

# Modules whose tests run in-process on data: the fast lane. A module that starts a cluster, an
# MLServer or a subprocess of the harness does not belong here.
FAST_MODULES = frozenset({
    "test_checks_placement.py", "test_checks_slo.py", "test_config.py", "test_gpu_checks.py",
    "test_gpu_result.py", "test_k8s_rules.py", "test_kube_stuck.py", "test_load_unit.py",
    "test_report_schema.py", "test_sim_api_patch.py", "test_gpu_use.py", "test_gpu_sharing.py",
})
# Tests in those modules that start the harness in a subprocess: correct, but seconds each.
NOT_FAST = frozenset({"test_cli_exit_code_2_without_traceback", "test_two_worker_processes_share_the_rate"})


DURATIONS = Path(__file__).with_name("durations.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-durations", default=None, metavar="PATH",
                     help="write each test's duration (setup + call + teardown, those of 1 s or more) to PATH as "
                          "JSON, for the order of `make test`'s workers (tests/kit/order.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).name in FAST_MODULES and getattr(item, "originalname", item.name) not in NOT_FAST:
            item.add_marker(pytest.mark.fast)
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1 and DURATIONS.is_file():
        durations = json.loads(DURATIONS.read_text())
        order = {nodeid: i for i, nodeid in enumerate(balanced_order([i.nodeid for i in items], durations, workers))}
        items.sort(key=lambda item: order[item.nodeid])


class DurationRecorder:
    """--record-durations: registered on the process that sees every report (the xdist controller)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        kept = {nodeid: round(s, 1) for nodeid, s in sorted(self.seconds.items()) if s >= 1.0}
        self.path.write_text(json.dumps(kept, indent=0) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--record-durations")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(Path(path)), "duration-recorder")


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("sim"))
