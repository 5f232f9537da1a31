"""GPU facts about nodes and pods: one definition of "GPU node" and of "GPUs a pod requests".

A pod's request follows kubernetes/kubernetes staging/src/k8s.io/component-helpers/resource/helpers.go
(`PodRequests`/`aggregateContainerResourcesByFn`, commit 0085214e563468088672cf8c50849884198a18cc): the
sum over containers plus restartable (sidecar) init containers, and at least the largest single init
container plus the sidecars started before it. A container's request falls back to its limit per
resource, as API defaulting does for extended resources, so templates count like admitted pods.

A node is a GPU node when it is labelled into the GPU pool, labelled `nvidia.com/gpu.present=true`
(gpu-feature-discovery / the device plugin's selector), or advertises the GPU resource. The pool label
alone is enough on purpose: a pool node whose device plugin is broken advertises no GPUs and is
exactly the node the placement checks must still hold to the GPU rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from harness.k8s.quantity import quantity_or_zero

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# NVIDIA's device plugin chart tolerates these by default (NVIDIA/k8s-device-plugin v0.17.1
# deployments/helm/nvidia-device-plugin/values.yaml); a `tolerations` value replaces them, so a
# profile's own GPU taint means listing them again.
DEVICE_PLUGIN_DEFAULT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
)


def container_request(container: Mapping[str, Any], resource: str) -> Fraction:
    """The container's request for `resource`, its limit when the request is unset, else 0."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    if resource in requests:
        return quantity_or_zero(requests[resource])
    return quantity_or_zero(limits.get(resource))


def pod_spec_request(pod_spec: Mapping[str, Any], resource: str) -> Fraction:
    """The effective request of a pod spec for one resource (containers, sidecars, init containers)."""
    total = sum((container_request(c, resource) for c in pod_spec.get("containers") or []), Fraction(0))
    sidecars = Fraction(0)
    init_peak = Fraction(0)
    for c in pod_spec.get("initContainers") or []:
        request = container_request(c, resource)
        if c.get("restartPolicy") == "Always":
            total += request
            sidecars += request
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, request + sidecars)
    return max(total, init_peak)


def pod_gpu_request(pod: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """Whole GPUs a pod (an object with `spec`, or a bare pod spec) requests."""
    spec = pod.get("spec")
    return int(pod_spec_request(spec if isinstance(spec, Mapping) else pod, resource))


def node_gpu_count(node: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """GPUs the node advertises: allocatable, else capacity (what the device plugin registered)."""
    status = node.get("status") or {}
    for section in ("allocatable", "capacity"):
        values = status.get(section) or {}
        if resource in values:
            return int(quantity_or_zero(values[resource]))
    return 0


def in_pool(node: Mapping[str, Any], pool_key: str, pool_value: str) -> bool:
    """The node carries the pool label (an empty `pool_key`: no pool label is known, so no node does)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return bool(pool_key) and labels.get(pool_key) == pool_value


def is_gpu_node(node: Mapping[str, Any], pool_key: str, pool_value: str,
                resource: str = GPU_RESOURCE) -> bool:
    """In the GPU pool by label, GPU-present by label, or advertising the GPU resource.

    An empty `pool_key` means no pool label is known (a report read without its profile)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return (
        in_pool(node, pool_key, pool_value)
        or labels.get(GPU_PRESENT_LABEL) == "true"
        or node_gpu_count(node, resource) > 0
    )
