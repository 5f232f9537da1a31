"""Tolerations and node affinity for the GPU pool: one place, so Servers, probes and lint agree."""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.k8s.gpu import GPU_PRESENT_LABEL

# Applied to GPU workloads on kind with real passthrough: the nvkind recipe configures the NVIDIA
# runtime in containerd without making it the default, so GPU pods must ask for it by name.
NVIDIA_RUNTIME_CLASS = "nvidia"


def gpu_toleration(profile: Profile) -> dict[str, Any]:
    """Equal toleration for the profile's taint. No tolerationSeconds: a NoExecute taint must never
    evict the Servers it exists for."""
    taint = profile.gpu.taint
    return {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}


def pool_selector(profile: Profile) -> dict[str, str]:
    label = profile.gpu.pool_label
    return {label.key: label.value}


def pool_affinity(profile: Profile) -> dict[str, Any]:
    """Required node affinity: `pool In [value]`."""
    label = profile.gpu.pool_label
    return _required([{"key": label.key, "operator": "In", "values": [label.value]}])


def off_pool_affinity(profile: Profile) -> dict[str, Any]:
    """Required `pool NotIn [value]`: keeps CPU workloads off the pool even where an admission plugin
    adds GPU tolerations (NotIn also matches nodes without the label)."""
    label = profile.gpu.pool_label
    return _required([{"key": label.key, "operator": "NotIn", "values": [label.value]}])


def gpu_present_affinity() -> dict[str, Any]:
    return _required([{"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}])


def _required(expressions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}],
            }
        }
    }


def uses_runtime_class(profile: Profile) -> bool:
    """Only kind with real GPU passthrough creates the `nvidia` RuntimeClass; managed clusters and the
    GPU operator make the NVIDIA runtime the default, where a RuntimeClass may not exist at all."""
    return profile.cluster.provider == "kind" and not profile.cluster.fake_gpus


def installs_device_plugin(profile: Profile) -> bool:
    return profile.gpu.device_plugin.install and not profile.cluster.fake_gpus
