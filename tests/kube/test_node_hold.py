"""Issue 26 item 2: the eviction test closes its node (NoSchedule), waits until the scheduler has seen
it, looks again, and only then may taint NoExecute; a tenant pod bound between the first look and the
taint is found at the second look and nothing is evicted. Against the simulated cluster (scheduler
and kubelet running), no Seldon data plane."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checks.shared_nodes import nodes_free_of_others
from harness.config import load_profile
from harness.kube import Kube, NodeGuard, RetryPolicy
from harness.node_hold import evicted, hold_node
from tests.kit.sim_fixtures import kube_against, started_sim

ROOT = Path(__file__).resolve().parents[2]
NODE = "seldon-gpu-gpu-worker3"
RUN = "hold-run"
TAINT = {"key": "harness.seldon.dev/evict-test", "value": "true", "effect": "NoExecute"}
PROFILE = load_profile(ROOT / "profiles" / "sim.yaml")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from started_sim(tmp_path_factory.mktemp("hold-sim"))


@pytest.fixture
def kube(sim: Any) -> Iterator[Kube]:
    for k in kube_against(sim, RetryPolicy(attempts=3, base_s=0.01, max_delay_s=0.05)):
        for ns in (f"{RUN}-ns", "team-b"):
            k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        yield k
        for ns in (f"{RUN}-ns", "team-b"):
            k.delete("v1", "Namespace", ns, wait=True, timeout=30)


def _taints(kube: Kube) -> list[dict[str, Any]]:
    node = kube.get("v1", "Node", NODE)
    assert node is not None
    return copy.deepcopy((node.get("spec") or {}).get("taints") or [])


def _tenant(kube: Kube, name: str) -> dict[str, Any]:
    """Another team's GPU-node pod, placed by the scheduler (it tolerates the GPU taint)."""
    taint = PROFILE.gpu.taint
    return kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team-b"},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE},
                                 "containers": [{"name": "c", "image": "busybox:1.36"}],
                                 "tolerations": [{"key": taint.key, "operator": "Equal", "value": taint.value,
                                                  "effect": taint.effect}]}})


def _phase(pod: dict[str, Any] | None) -> str:
    return str(((pod or {}).get("status") or {}).get("phase") or "")


def test_a_tenant_pod_bound_after_the_first_look_is_found_and_nothing_is_evicted(kube: Kube) -> None:
    before = _taints(kube)
    first_look = kube.list("v1", "Pod", field_selector=f"spec.nodeName={NODE}")
    assert nodes_free_of_others([NODE], first_look, RUN, TAINT, [f"{RUN}-ns"]).free == [NODE]
    # the race: a tenant's pod is bound after the check, before any taint
    _tenant(kube, "tenant")
    kube.wait_for("v1", "Pod", "tenant", "team-b", lambda p: _phase(p) == "Running", timeout=30,
                  what="tenant pod running")
    guard = NodeGuard(kube, RUN, install_signal_handlers=False)
    held = hold_node(kube, guard, PROFILE, NODE, namespace=f"{RUN}-ns", run_id=RUN, taint=TAINT, shared=True)
    assert held.skip is not None and "team-b/tenant" in held.skip and "restored" in held.skip
    assert _taints(kube) == before and guard.changes() == []
    assert _phase(kube.get("v1", "Pod", "tenant", "team-b")) == "Running"
    kube.delete("v1", "Pod", "tenant", "team-b", wait=True, timeout=30)


def test_a_held_node_takes_no_new_pod_and_is_restored(kube: Kube) -> None:
    before = _taints(kube)
    guard = NodeGuard(kube, RUN, install_signal_handlers=False)
    held = hold_node(kube, guard, PROFILE, NODE, namespace=f"{RUN}-ns", run_id=RUN, taint=TAINT, shared=True)
    try:
        assert held.skip is None, held.skip
        assert {"key": TAINT["key"], "value": "true", "effect": "NoSchedule"} in _taints(kube)
        assert kube.list("v1", "Pod", f"{RUN}-ns") == []  # the canaries are gone
        _tenant(kube, "late-tenant")
        pod = kube.wait_for("v1", "Pod", "late-tenant", "team-b",
                            lambda p: any(c.get("reason") == "Unschedulable"
                                          for c in ((p or {}).get("status") or {}).get("conditions") or []),
                            timeout=30, what="the late tenant pod refused")
        assert not (pod or {}).get("spec", {}).get("nodeName")
    finally:
        assert guard.restore_all() == []
    assert _taints(kube) == before
    kube.delete("v1", "Pod", "late-tenant", "team-b", wait=True, timeout=30)


def test_every_evicted_pod_is_named_daemonset_pods_included() -> None:
    def pod(name: str, uid: str, owner: str | None = None) -> dict[str, Any]:
        refs = [{"kind": owner, "name": "x", "controller": True}] if owner else []
        return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "ownerReferences": refs}}

    before = [pod("evict-now", "1"), pod("nvidia-device-plugin-abc", "2", "DaemonSet"), pod("stays", "3")]
    after = [pod("stays", "3"), {**pod("evict-later", "4")}]
    assert evicted(before, after) == ["ns/evict-now", "ns/nvidia-device-plugin-abc (DaemonSet)"]
