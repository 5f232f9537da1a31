"""Where lint finds pod specs in documents, and lint's view of node selection (the rules are harness.k8s)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

from harness.k8s import affinity
from harness.k8s.affinity import required_terms
from harness.k8s.gpu import pod_gpu_request
from harness.k8s.quantity import quantity_or_none
from harness.k8s.sharing import GPU_RESOURCE, container_gpu_resources
from harness.lint.model import Document

# Pod-template locations per kind (workload controllers); Servers and ServerConfigs are handled apart.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Labels a profile cannot predict (kind and clouds set them); selections on them are assumed satisfiable
# when judged against the profile's expected nodes rather than live ones.
UNPREDICTABLE_LABELS = frozenset({"kubernetes.io/hostname"})
EXPECTED_NODE_ANNOTATION = "harness.seldon.dev/expected-node"


def workload_pod(doc: Document) -> tuple[dict[str, Any], str] | None:
    path = _TEMPLATE_PATHS.get(doc.kind)
    if path is None or doc.chart is not None:
        return None
    node: Any = doc.body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else {}), ".".join(path)


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, c in enumerate(pod.get("containers") or []):
        if isinstance(c, dict):
            yield i, c


def gpu_counts(container: Mapping[str, Any], resource: str) -> tuple[Fraction | None, Fraction | None]:
    """(request, limit) of one container for `resource`; None when absent or not a quantity."""
    resources = container.get("resources") or {}
    return (
        quantity_or_none((resources.get("requests") or {}).get(resource)),
        quantity_or_none((resources.get("limits") or {}).get(resource)),
    )


def gpu_resource_names(container: Mapping[str, Any], resource: str) -> list[str]:
    """The GPU resources a container names: `resource`, and with the default nvidia.com/gpu also the
    shared rename and MIG resources the NVIDIA device plugin advertises instead (harness/k8s/sharing.py)."""
    if resource != GPU_RESOURCE:
        return [resource]
    return sorted({resource, *container_gpu_resources(container)})


def requests_gpu(pod: Mapping[str, Any], resource: str) -> bool:
    """The pod asks for the GPU resource (a limit alone implies the same request); with nvidia.com/gpu
    also for shared replicas or MIG devices."""
    return pod_gpu_request(pod, resource) > 0


def node_labels(node: Mapping[str, Any]) -> dict[str, str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def is_expected(node: Mapping[str, Any]) -> bool:
    return EXPECTED_NODE_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})


def selects_node(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector AND required node affinity (`harness.k8s.affinity`); for a node the profile only
    expects, labels kind or the cloud set and the node's name are unknown, so they are assumed to match."""
    expected = is_expected(node)
    name = None if expected else str((node.get("metadata") or {}).get("name", ""))
    unknown = UNPREDICTABLE_LABELS if expected else frozenset()
    return affinity.selects_node(pod, node_labels(node), name, unknown)


def has_selection(pod: Mapping[str, Any]) -> bool:
    return bool(pod.get("nodeSelector")) or required_terms(pod) is not None


def targets_label(pod: Mapping[str, Any], key: str, value: str) -> bool:
    """Every way the pod may be placed requires `key=value`: by nodeSelector, or in every required term."""
    if (pod.get("nodeSelector") or {}).get(key) == value:
        return True
    terms = required_terms(pod)
    if not terms:
        return False
    for term in terms:
        if not any(
            e.get("key") == key and e.get("operator") == "In" and [str(v) for v in e.get("values") or []] == [value]
            for e in term.get("matchExpressions") or []
        ):
            return False
    return True
