"""The kind cluster config: control plane, CPU workers, GPU workers with taint, labels and passthrough."""

from __future__ import annotations

from typing import Any

import yaml

from harness.config import GpuWorkers, Profile
from harness.errors import UsageError
from harness.k8s.gpu import GPU_PRESENT_LABEL
from harness.k8s.sharing import COUNT_LABEL, MEMORY_LABEL, PRODUCT_LABEL, gfd_labels
from harness.layout import static as static_layout

KIND_API = "kind.x-k8s.io/v1alpha4"
# nvkind: a /dev/null mount at this path asks the NVIDIA runtime (volume-mount device requests) for a GPU.
DEVICE_REQUEST_DIR = "/var/run/nvidia-container-devices"


def gpu_node_labels(profile: Profile, group: GpuWorkers) -> dict[str, str]:
    """Labels of one GPU worker: extras first, then the pool label and the gpu-feature-discovery style
    NVIDIA labels, which win: an extra label must not be able to move a worker out of the pool."""
    labels = dict(group.labels)
    labels |= {
        profile.gpu.pool_label.key: profile.gpu.pool_label.value,
        GPU_PRESENT_LABEL: "true",
        PRODUCT_LABEL: group.product,
        COUNT_LABEL: str(group.gpus),
        MEMORY_LABEL: str(group.memory_mib),
    }
    # Shared GPUs: the labels gpu-feature-discovery would write (harness/k8s/sharing.py; kind runs no
    # GFD), so the capacity and product checks hold the kind lane to the same rules.
    sharing = profile.gpu.shared()
    if sharing.mode != "none":
        labels |= gfd_labels(group.product, group.gpus, group.memory_mib, sharing,
                             sharing.mig_profiles if sharing.mig else ())
    return labels


def host_gpu_assignment(profile: Profile) -> list[list[str]]:
    """Host GPUs per GPU worker, in node order: explicit `host_gpus`, else 0..N-1 handed out in order."""
    profile = static_layout(profile)
    assignment: list[list[str]] = []
    next_index = 0
    for group in profile.cluster.nodes.gpu_workers:
        for worker in range(group.count):
            if group.host_gpus:
                ids = list(group.host_gpus[worker])
                if ids != ["all"] and len(ids) != group.gpus:
                    raise UsageError(
                        f"{profile.source}: cluster.nodes.gpu_workers.host_gpus[{worker}]: expected {group.gpus} "
                        f"GPU id(s) or ['all'], got {ids}"
                    )
            else:
                ids = [str(i) for i in range(next_index, next_index + group.gpus)]
                next_index += group.gpus
            assignment.append(ids)
    return assignment


def _taint_patch(profile: Profile) -> str:
    # kind has no taint field: the taint is registered by kubeadm when the worker joins.
    patch = {
        "kind": "JoinConfiguration",
        "nodeRegistration": {"taints": [profile.gpu.taint.as_k8s()]},
    }
    return yaml.safe_dump(patch, sort_keys=False, default_flow_style=False)


def kind_config(profile: Profile) -> dict[str, Any]:
    profile = static_layout(profile)  # gpu_workers: auto without a host: the documented static layout
    cluster = profile.cluster
    image = cluster.node_image
    control: dict[str, Any] = {"role": "control-plane", "image": image}
    if cluster.nodes.control_plane.labels:
        control["labels"] = dict(cluster.nodes.control_plane.labels)
    # The mesh NodePort is reachable through any node; publish it on loopback only.
    control["extraPortMappings"] = [
        {
            "containerPort": cluster.mesh_node_port,
            "hostPort": cluster.mesh_host_port,
            "listenAddress": "127.0.0.1",
            "protocol": "TCP",
        }
    ]
    nodes: list[dict[str, Any]] = [control]
    for _ in range(cluster.nodes.cpu_workers.count):
        worker: dict[str, Any] = {"role": "worker", "image": image}
        if cluster.nodes.cpu_workers.labels:
            worker["labels"] = dict(cluster.nodes.cpu_workers.labels)
        nodes.append(worker)
    assignment = host_gpu_assignment(profile)
    position = 0
    for group in cluster.nodes.gpu_workers:
        for _ in range(group.count):
            gpu_worker: dict[str, Any] = {
                "role": "worker",
                "image": image,
                "labels": gpu_node_labels(profile, group),
                "kubeadmConfigPatches": [_taint_patch(profile)],
            }
            if not cluster.fake_gpus:
                gpu_worker["extraMounts"] = [
                    {"hostPath": "/dev/null", "containerPath": f"{DEVICE_REQUEST_DIR}/{gpu_id}"}
                    for gpu_id in assignment[position]
                ]
            position += 1
            nodes.append(gpu_worker)
    config: dict[str, Any] = {"kind": "Cluster", "apiVersion": KIND_API, "nodes": nodes}
    if cluster.registry_mirrors:
        # containerd reads per-registry hosts files (written after creation) only with this config_path.
        from harness.render.images import CONTAINERD_REGISTRY_PATCH

        config["containerdConfigPatches"] = [CONTAINERD_REGISTRY_PATCH]
    return config
