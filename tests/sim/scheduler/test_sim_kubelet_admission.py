"""Kubelet admission of pods bound by `spec.nodeName` (no scheduler in the way), through the real client.

Source: kubernetes/kubernetes pkg/kubelet/lifecycle/predicate.go `Admit`/`generalFilter` (commit
00991fb96b40c675ccdc8b61d9893a5f7de526ec) and pkg/kubelet/kubelet.go `rejectPod`: the first failing check
names the reason (`OutOfcpu`, `OutOfmemory`, `NodeAffinity`, `TaintToleration` for NoExecute taints) and
the pod is Failed with "Pod was rejected: <message>"; a pod that fits runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.scheduler_sim import NS, Sim, node, pod_body, reset, running, wait_event, wait_pod

Obj = dict[str, Any]


def failed(pod: Obj | None) -> bool:
    return pod is not None and (pod.get("status") or {}).get("phase") == "Failed"


# case, node kwargs, pod kwargs, expected reason (None: admitted), message
CASES: list[tuple[str, Obj, Obj, str | None, str]] = [
    ("cpu-above-allocatable", {"cpu": "4"}, {"requests": {"cpu": "8"}}, "OutOfcpu",
     "Pod was rejected: Node didn't have enough resource: cpu, requested: 8000, used: 0, capacity: 4000"),
    ("memory-above-allocatable", {"memory": "1Gi"}, {"requests": {"memory": "2Gi"}}, "OutOfmemory",
     "Pod was rejected: Node didn't have enough resource: memory, requested: 2147483648, used: 0, "
     "capacity: 1073741824"),
    ("node-selector-mismatch", {"labels": {"pool": "cpu"}}, {"node_selector": {"pool": "gpu"}}, "NodeAffinity",
     "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"),
    ("noexecute-taint-untolerated", {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}, {},
     "TaintToleration", "Pod was rejected: Predicate TaintToleration failed: node(s) had taints that the pod "
     "didn't tolerate"),
    ("fits", {"cpu": "4"}, {"requests": {"cpu": "1"}}, None, ""),
]


@pytest.mark.parametrize(("case", "node_kw", "pod_kw", "reason", "message"), CASES, ids=[c[0] for c in CASES])
def test_kubelet_admission_of_node_name_bound_pods(sim: Sim, case: str, node_kw: Obj, pod_kw: Obj,
                                                   reason: str | None, message: str) -> None:
    reset(sim)
    sim.core.create_node(node("n1", **node_kw))
    sim.core.create_namespaced_pod(NS, pod_body("bound", node_name="n1", **pod_kw))
    if reason is None:
        wait_pod(sim, "bound", running)
        return
    pod = wait_pod(sim, "bound", failed)
    assert pod is not None
    assert (pod["status"]["reason"], pod["status"]["message"]) == (reason, message)
    assert not pod["status"].get("containerStatuses")  # never started
    events = wait_event(sim, "bound", lambda e: e.reason == reason)
    assert events[-1].type == "Warning"
