"""A started SimCluster without MLServer (control-plane facts only) and its Waiter, one per test module;
modules that need MLServer or another shape define their own `cluster`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.config import parse_profile
from harness.safeyaml import load_one
from harness.sim.cluster import SimCluster
from tests.kit.sim_fixtures import Waiter
from tests.kit.simproc import ROOT


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    data = load_one((ROOT / "profiles" / "sim.yaml").read_text(), "profiles/sim.yaml")
    data["cluster"]["nodes"]["cpu_workers"] = {"count": 1, "cpu": "64", "memory": "256Gi"}
    profile = parse_profile(data, "profiles/sim.yaml (roomier CPU worker)")
    sim = SimCluster(profile, tmp_path_factory.mktemp("sim-strict-seldon"), mlserver=False)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def waiter(cluster: SimCluster) -> Waiter:
    return Waiter(cluster)
