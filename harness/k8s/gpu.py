"""GPU facts about nodes and pods: one definition of "GPU node" and of "GPUs a pod requests".

A pod's request follows kubernetes/kubernetes staging/src/k8s.io/component-helpers/resource/helpers.go
(`PodRequests`/`aggregateContainerResourcesByFn`, commit 0085214e563468088672cf8c50849884198a18cc): the
sum over containers plus restartable (sidecar) init containers, and at least the largest single init
container plus the sidecars started before it. A container's request falls back to its limit per
resource, as API defaulting does for extended resources, so templates count like admitted pods.

`nvidia.com/gpu` stands for every NVIDIA GPU resource the device plugin may advertise instead of it
(the `.shared` rename of time-sliced GPUs, `nvidia.com/mig-<profile>` under the mixed MIG strategy;
harness/k8s/sharing.py pins those names), so a pod asking for a MIG slice is a GPU pod and a node
offering only MIG devices is a GPU node. `pod_resource_request`/`node_resource_count` count one exact name.

A node is a GPU node when it is labelled into the GPU pool, labelled `nvidia.com/gpu.present=true`
(gpu-feature-discovery / the device plugin's selector), or advertises the GPU resource. The pool label
alone is enough on purpose: a pool node whose device plugin is broken advertises no GPUs and is
exactly the node the placement checks must still hold to the GPU rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from harness.k8s.quantity import quantity_or_zero
from harness.k8s.sharing import GPU_RESOURCE as GPU_RESOURCE
from harness.k8s.sharing import is_gpu_resource

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


def _gpu_names(resource: str, present: Iterable[str]) -> list[str]:
    """`nvidia.com/gpu` stands for every NVIDIA GPU resource (whole GPUs, time-sliced replicas under
    their rename, MIG devices: harness/k8s/sharing.py); any other name only for itself."""
    if resource != GPU_RESOURCE:
        return [resource]
    return sorted({str(r) for r in present if is_gpu_resource(str(r))} | {GPU_RESOURCE})


def _spec_resources(spec: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = (c.get("resources") or {}) if isinstance(c, Mapping) else {}
        names |= {str(k) for k in (resources.get("requests") or {})} | {str(k) for k in (resources.get("limits") or {})}
    return names


def pod_gpu_request(pod: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """GPU devices a pod (an object with `spec`, or a bare pod spec) requests: whole GPUs, replicas of
    shared GPUs or MIG devices, summed over the NVIDIA GPU resources when `resource` is nvidia.com/gpu."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else pod
    return int(sum((pod_spec_request(spec, r) for r in _gpu_names(resource, _spec_resources(spec))), Fraction(0)))


def pod_resource_request(pod: Mapping[str, Any], resource: str) -> int:
    """Units of exactly `resource` a pod requests (one MIG profile, the shared rename, ...)."""
    spec = pod.get("spec")
    return int(pod_spec_request(spec if isinstance(spec, Mapping) else pod, resource))


def node_resource_count(node: Mapping[str, Any], resource: str) -> int:
    """Units of exactly `resource` the node advertises: allocatable, else capacity."""
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


def free_units(node: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], resource: str) -> int:
    """Units of exactly `resource` the node advertises minus what its pods that have not terminated
    request (whole GPUs, time-sliced replicas or one MIG profile's devices)."""
    used = sum(pod_resource_request(p, resource) for p in pods
               if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
    return node_resource_count(node, resource) - used


def node_gpu_count(node: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """GPU devices the node advertises (allocatable, else capacity: what the device plugin registered),
    summed over the NVIDIA GPU resources when `resource` is nvidia.com/gpu (replicas and MIG devices count)."""
    status = node.get("status") or {}
    present = {str(k) for section in ("allocatable", "capacity") for k in (status.get(section) or {})}
    return sum(node_resource_count(node, r) for r in _gpu_names(resource, present))


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
