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


def runtime_class_name(profile: Profile) -> str | None:
    """The RuntimeClass GPU pods name (`gpu.runtime_class`). `detect` is decided here for kind (with real
    GPU passthrough the harness creates `nvidia`; with fake GPUs there is no NVIDIA runtime); on other
    clusters the run resolves it against the cluster first (`harness.lifecycle`), and a profile still
    saying `detect` (render without a cluster) names none."""
    wanted = profile.gpu.runtime_class
    if wanted != "detect":
        return wanted
    if profile.cluster.provider == "kind" and not profile.cluster.fake_gpus:
        return NVIDIA_RUNTIME_CLASS
    return None


def detect_runtime_class(runtime_classes: list[dict[str, Any]]) -> str | None:
    """The cluster's NVIDIA RuntimeClass: the one named `nvidia`, else one whose handler is `nvidia`."""
    names = sorted(str((rc.get("metadata") or {}).get("name")) for rc in runtime_classes)
    if NVIDIA_RUNTIME_CLASS in names:
        return NVIDIA_RUNTIME_CLASS
    handled = sorted(str((rc.get("metadata") or {}).get("name")) for rc in runtime_classes
                     if rc.get("handler") == NVIDIA_RUNTIME_CLASS)
    return handled[0] if handled else None


def uses_runtime_class(profile: Profile) -> bool:
    return runtime_class_name(profile) is not None


def installs_device_plugin(profile: Profile) -> bool:
    return profile.gpu.device_plugin.install and not profile.cluster.fake_gpus
