"""Simulated GPU inventory: stable UUIDs per node, the annotations that expose them, and quantities.

Real nodes learn their GPUs from the NVIDIA device plugin; the sim derives them from the node name
so that a GPU keeps its UUID across restarts of the simulated cluster and tests can compare sets.
The annotations below exist only in the sim: the harness's checks must never need them.
"""

from __future__ import annotations

import hashlib
import re
from fractions import Fraction
from typing import Any

Obj = dict[str, Any]

GPU_RESOURCE = "nvidia.com/gpu"
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


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1), "m": Fraction(1, 1000), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
    "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10),
    "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40), "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


def parse_quantity(value: Any) -> Fraction:
    """A Kubernetes resource quantity (`100m`, `1.5`, `2Gi`, `1e3`) as an exact fraction.

    Raises ValueError for anything Kubernetes would reject, so callers can name the field.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return Fraction(match.group(1)) * _SUFFIX[match.group(2) or ""]


def quantity_or_zero(value: Any) -> Fraction:
    try:
        return parse_quantity(value)
    except ValueError:
        return Fraction(0)
