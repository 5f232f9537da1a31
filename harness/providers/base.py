"""The lifecycle interface every cluster provider implements, and the data it hands out.

Switching profiles is the only change a user makes: the run lifecycle calls the same methods on
`sim`, `kind` and `existing`, in the same order:
preflight → provision → prepare_nodes → install_gpu_stack → install_seldon → (tests) → teardown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.kube.tools import ToolPaths

if TYPE_CHECKING:
    from harness.kube import Kube, NodeGuard


@dataclass(frozen=True)
class PreflightCheck:
    """One preflight result. `message` says what is wrong and how to fix it (or what was found)."""

    id: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ClusterHandle:
    provider: str
    kubeconfig: Path
    context: str | None
    simulated: bool
    cluster_name: str
    created: bool


@dataclass(frozen=True)
class MeshEndpoint:
    http_url: str
    grpc_target: str | None
    # How the runner reaches it: loadbalancer | profile (seldon.mesh_endpoint) | nodeport (kind) | tunnel
    # (a port-forward through the API server; `note` says the latency includes it).
    route: str = "loadbalancer"
    note: str = ""


@dataclass(frozen=True)
class ClusterFacts:
    kubernetes_version: str
    seldon_version: str | None
    gpu_toleration_admission: bool
    # How the admission answer was obtained: "profile" or "detected" (or "detection failed: ...").
    admission_source: str
    simulated: bool
    gpu_nodes: tuple[str, ...] = ()
    # How `simulated` was established (the profile's provider, or the API server's own marker).
    simulated_reason: str | None = None


# (GPU UUIDs in index order, or None when NVML is unusable; a one-line reason)
GpuInventory = Callable[[], tuple[list[str] | None, str]]


def _default_inventory() -> tuple[list[str] | None, str]:
    from harness.gpu.host import host_inventory_with_reason

    result, reason = host_inventory_with_reason()
    if result is None:
        return None, reason
    ordered = sorted(result.devices, key=lambda d: d.index)
    return [d.uuid or str(d.index) for d in ordered], reason


def _default_nvml() -> tuple[Any, str]:
    from harness.gpu.host import host_inventory_with_reason

    return host_inventory_with_reason()


@dataclass(frozen=True)
class HostProbe:
    """Host facts the kind preflight reads; every path and the NVML inventory can be replaced in tests."""

    nvidia_runtime_config: Path = Path("/etc/nvidia-container-runtime/config.toml")
    inotify_dir: Path = Path("/proc/sys/fs/inotify")
    gpu_inventory: GpuInventory = _default_inventory
    # The whole host NVML view (MIG mode and devices per GPU), for gpu.sharing.mig (providers/sharing.py).
    nvml: Callable[[], tuple[Any, str]] = _default_nvml


@dataclass(frozen=True)
class ProviderOptions:
    run_id: str
    keep_cluster: bool
    workdir: Path
    kubeconfig: Path | None
    tools: ToolPaths | None
    host: HostProbe = field(default_factory=HostProbe)
    # sim only: back MLServer-type Servers with real MLServer processes (the data plane).
    sim_mlserver: bool = True


class Provider(Protocol):
    name: str

    def preflight(self) -> list[PreflightCheck]: ...

    def provision(self) -> ClusterHandle: ...

    def prepare_nodes(self, kube: Kube, guard: NodeGuard) -> list[str]: ...

    def install_gpu_stack(self, kube: Kube) -> None: ...

    def install_seldon(self, kube: Kube) -> None: ...

    def mesh_endpoint(self, kube: Kube) -> MeshEndpoint: ...

    def cluster_facts(self, kube: Kube) -> ClusterFacts: ...

    def teardown(self) -> None: ...
