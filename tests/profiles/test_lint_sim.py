"""`lint --cluster` against the simulated cluster: the profile's own nodes pass, a node change is caught."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.lint import read_live_nodes
from harness.config import load_profile

ROOT = Path(__file__).resolve().parents[2]
SIM_PROFILE = ROOT / "profiles" / "sim.yaml"


@pytest.fixture
def sim_kubeconfig(tmp_path: Path) -> Iterator[Path]:
    from harness.sim.cluster import SimCluster

    cluster = SimCluster(load_profile(SIM_PROFILE), tmp_path / "sim", mlserver=False)
    cluster.start()
    try:
        yield cluster.kubeconfig_path
    finally:
        cluster.stop()


def test_lint_cluster_against_the_sim(sim_kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kubernetes import client, config

    assert main(["lint", "--profile", str(SIM_PROFILE), "--cluster", "--kubeconfig", str(sim_kubeconfig)]) == 0
    assert capsys.readouterr().out.strip().endswith("0 error(s), 0 warning(s)")

    nodes = read_live_nodes(str(sim_kubeconfig), timeout_s=10)
    gpu_node = next(n for n in nodes if (n["metadata"].get("labels") or {}).get("pool") == "infer-srv")
    name = gpu_node["metadata"]["name"]
    api = config.new_client_from_config(config_file=str(sim_kubeconfig))
    with api:
        client.CoreV1Api(api).patch_node(name, {"spec": {"taints": []}}, _request_timeout=10)
    assert main(["lint", "--profile", str(SIM_PROFILE), "--cluster", "--kubeconfig", str(sim_kubeconfig)]) == 1
    out = capsys.readouterr().out
    assert f"error NODE001 Node/{name} spec.taints" in out
