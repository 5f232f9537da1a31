"""Simulated GPU inventory: stable UUIDs per node, the annotations that expose them, and quantities.

Real nodes learn their GPUs from the NVIDIA device plugin; the sim derives them from the node name
so that a GPU keeps its UUID across restarts of the simulated cluster and tests can compare sets.
The annotations below exist only in the sim: the harness's checks must never need them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from harness.k8s.gpu import GPU_RESOURCE
from harness.k8s.quantity import quantity_or_zero

Obj = dict[str, Any]

# Every simulated GPU of a node, in device-index order, comma separated.
GPU_UUIDS_ANNOTATION = "sim.harness.dev/gpu-uuids"
# The GPUs the simulated device plugin handed to a pod, comma separated (empty: none).
ALLOCATED_GPUS_ANNOTATION = "sim.harness.dev/allocated-gpus"


def gpu_uuid(node_name: str, index: int) -> str:
    """`GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, a pure function of (node name, device index)."""
    digest = hashlib.sha256(f"{node_name}/{index}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def node_gpu_uuids(node: Obj, resource: str = GPU_RESOURCE) -> list[str]:
    """The node's simulated GPUs in index order.

    Nodes built from the profile list them in an annotation; a node created or patched through the
    API (KWOK style, or fake capacity as on kind-cpu) gets one stable UUID per unit of its
    `nvidia.com/gpu` capacity, so every node that advertises GPUs can hand them out.
    """
    meta = node.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(GPU_UUIDS_ANNOTATION)
    if text is not None:
        return [u for u in str(text).split(",") if u]
    capacity = ((node.get("status") or {}).get("capacity") or {}).get(resource)
    count = int(quantity_or_zero(capacity)) if capacity is not None else 0
    return [gpu_uuid(str(meta.get("name", "")), i) for i in range(min(count, 64))]


def pod_allocated_gpus(pod: Obj) -> list[str]:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(ALLOCATED_GPUS_ANNOTATION, "")
    return [u for u in str(text).split(",") if u]
