"""Placement: GPU Servers on the tainted GPU pool, nothing else there, each Model on its Server.

Runs against the profile's deployment. On an existing cluster a GPU node that lacks the taint or
the pool label is reported by name and never changed.
"""

from __future__ import annotations

import pytest

from harness.testkit import ClusterSession, Profile, TestRecorder, fail_on_findings, placement


@pytest.fixture(scope="module")
def snapshot(deployment: ClusterSession) -> placement.Snapshot:
    """One snapshot of nodes, pods, Servers and Models for every check of this module."""
    snap: placement.Snapshot = deployment.snapshot()
    return snap


@pytest.fixture(autouse=True)
def _record_placement(snapshot: placement.Snapshot, profile: Profile, record: TestRecorder) -> None:
    record.placement(snapshot)


def test_gpu_pool_nodes_carry_the_taint_and_label(snapshot: placement.Snapshot, profile: Profile) -> None:
    gpu_nodes = [n for n in snapshot.nodes if placement.gpu_node(n, profile)]
    assert gpu_nodes, (
        f"no GPU node found (none labelled {profile.gpu.pool_label.key}={profile.gpu.pool_label.value}, "
        f"nvidia.com/gpu.present=true, or advertising {profile.gpu.resource_name})"
    )
    fail_on_findings(placement.gpu_pool_tainted(snapshot, profile), snapshot, profile,
                     "GPU nodes without the dedicated-node taint or pool label")


def test_gpu_server_pods_run_on_the_gpu_pool(deployed_ok: ClusterSession, snapshot: placement.Snapshot,
                                             profile: Profile) -> None:
    if not profile.gpu_servers:
        pytest.skip("the profile has no GPU Server (servers[].gpus > 0)")
    fail_on_findings(placement.gpu_server_pods_on_pool(snapshot, profile), snapshot, profile,
                     "GPU Server pods off the GPU pool")


def test_nothing_without_the_toleration_runs_on_gpu_nodes(snapshot: placement.Snapshot, profile: Profile) -> None:
    fail_on_findings(placement.nothing_else_on_gpu_nodes(snapshot, profile), snapshot, profile,
                     "pods without the GPU toleration on GPU nodes")


def test_cpu_servers_stay_off_gpu_nodes(deployed_ok: ClusterSession, snapshot: placement.Snapshot,
                                        profile: Profile) -> None:
    if all(s.on_gpu for s in profile.servers):
        pytest.skip("the profile has no CPU Server (servers[].gpus == 0)")
    fail_on_findings(placement.cpu_servers_off_pool(snapshot, profile), snapshot, profile,
                     "CPU Server pods on GPU nodes")


def test_each_model_is_ready_on_its_intended_server(deployment: ClusterSession, snapshot: placement.Snapshot,
                                                    profile: Profile) -> None:
    findings = placement.models_on_intended_servers(snapshot, profile)
    if deployment.deploy_error and not findings:
        pytest.fail(f"deployment failed: {deployment.deploy_error}", pytrace=False)
    fail_on_findings(findings, snapshot, profile, "Models not ready on their intended Server")


def test_models_without_the_gpu_requirement_stay_off_gpu_servers(snapshot: placement.Snapshot,
                                                                 profile: Profile) -> None:
    fail_on_findings(placement.non_gpu_models_off_gpu_servers(snapshot, profile), snapshot, profile,
                     f"Models on GPU Servers without requiring {profile.gpu.capability!r}")
