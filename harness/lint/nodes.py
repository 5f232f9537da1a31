"""The nodes a profile promises, as Node-shaped dicts, so rules judge profile and live nodes alike."""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.k8s.sharing import GPU_RESOURCE, Sharing
from harness.lint.podspec import EXPECTED_NODE_ANNOTATION
from harness.render.kind import gpu_node_labels

_BASE_LABELS = {"kubernetes.io/os": "linux"}


def _node(name: str, labels: dict[str, str], taints: list[dict[str, str]], gpus: int, resource: str,
          sharing: Sharing | None = None) -> dict[str, Any]:
    # Shared GPUs: what the device plugin advertises for them (replicas, MIG resources; harness/k8s/sharing.py).
    advertised = sharing.node_capacity(gpus) if sharing is not None and resource == GPU_RESOURCE else {resource: gpus}
    capacity: dict[str, Any] = {k: str(v) for k, v in advertised.items()} if gpus else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {EXPECTED_NODE_ANNOTATION: "true"}},
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def expected_nodes(profile: Profile) -> list[dict[str, Any]]:
    """Control plane, CPU workers and GPU workers with the labels, taint and GPU capacity the profile sets."""
    nodes_cfg = profile.cluster.nodes
    resource = profile.gpu.resource_name
    control_labels = {**_BASE_LABELS, "node-role.kubernetes.io/control-plane": "", **nodes_cfg.control_plane.labels}
    nodes = [
        _node(
            "control-plane",
            control_labels,
            [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
            0,
            resource,
        )
    ]
    for i in range(nodes_cfg.cpu_workers.count):
        nodes.append(_node(f"cpu-worker-{i}", {**_BASE_LABELS, **nodes_cfg.cpu_workers.labels}, [], 0, resource))
    position = 0
    for group in nodes_cfg.gpu_workers:
        for _ in range(group.count):
            labels = {**_BASE_LABELS, **gpu_node_labels(profile, group)}
            nodes.append(_node(f"gpu-worker-{position}", labels, [profile.gpu.taint.as_k8s()], group.gpus, resource,
                               profile.gpu.shared()))
            position += 1
    return nodes
