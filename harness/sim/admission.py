"""The kubelet's admission of a pod bound to its node (what it checks before starting anything).

Upstream: kubernetes/kubernetes pkg/kubelet/lifecycle/predicate.go `predicateAdmitHandler.Admit` and
`generalFilter` (commit 00991fb96b40c675ccdc8b61d9893a5f7de526ec), with the scheduler's
`AdmissionCheck` (resource fit first, then node affinity/selector) and pkg/kubelet/kubelet.go
`rejectPod`: a pod the node cannot take (one bound by `spec.nodeName`, which skips the scheduler) is
not started; it becomes Failed with the first reason (`OutOfcpu`, `OutOfmemory`, `OutOf<resource>`,
`NodeAffinity`, `TaintToleration`) and "Pod was rejected: <message>", and a Warning event says so.
Extended resources (GPUs) are left to the device plugin's allocation, as `removeMissingExtendedResources`
and the device manager do (the kubelet's own check answers UnexpectedAdmissionError there).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from harness.k8s.taints import first_untolerated
from harness.sim.contracts import Obj
from harness.sim.scheduler import matches_node_selector_and_affinity, node_allocatable, pod_requests, requested_on

NODE_AFFINITY_MESSAGE = "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
TAINT_MESSAGE = "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"


def _amount(name: str, value: Fraction) -> int:
    return int(value * 1000) if name == "cpu" else int(value)


def rejection(pod: Obj, node: Obj, admitted: list[Obj]) -> tuple[str, str] | None:
    """(reason, message) when the node's kubelet refuses `pod`, given the pods it already admitted."""
    wanted = pod_requests(pod)
    alloc = node_allocatable(node)
    used = requested_on(admitted)
    max_pods = alloc.get("pods", Fraction(110))
    if len(admitted) + 1 > max_pods:
        return "OutOfpods", (f"Node didn't have enough resource: pods, requested: 1, used: {len(admitted)}, "
                             f"capacity: {int(max_pods)}")
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name not in wanted:
            continue
        have, taken = alloc.get(name, Fraction(0)), Fraction(used.get(name, 0))
        if wanted[name] > have - taken:
            reason = {"cpu": "OutOfcpu", "memory": "OutOfmemory"}.get(name, f"OutOf{name}")
            return reason, (f"Node didn't have enough resource: {name}, requested: {_amount(name, wanted[name])}, "
                            f"used: {_amount(name, taken)}, capacity: {_amount(name, have)}")
    if not matches_node_selector_and_affinity(pod, node):
        return "NodeAffinity", NODE_AFFINITY_MESSAGE
    spec: dict[str, Any] = pod.get("spec") or {}
    taints = (node.get("spec") or {}).get("taints") or []
    if first_untolerated(spec.get("tolerations") or [], taints, ("NoExecute",)) is not None:
        return "TaintToleration", TAINT_MESSAGE
    return None
