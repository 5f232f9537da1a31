"""The simulated cluster's nodes, shaped like a kind cluster's (names, labels, taints, status).

`build_nodes` is pure (profile -> Node dicts); `bootstrap_nodes` writes them into a store. Nodes
created later through the API (KWOK style) are first-class: every controller works from whatever
Node objects exist, never from the profile.
"""

from __future__ import annotations

from typing import Any

from harness.config import Profile
from harness.k8s.gpu import GPU_PRESENT_LABEL
from harness.k8s.sharing import COUNT_LABEL, GPU_RESOURCE, MEMORY_LABEL, NO_SHARING, PRODUCT_LABEL, Sharing
from harness.sim.contracts import ApiError, Obj, Store
from harness.sim.deviceplugin import advertise
from harness.sim.gpus import GPU_UUIDS_ANNOTATION, gpu_uuid
from harness.sim.scheduler import now_rfc3339

KUBELET_VERSION = "v1.32.2"
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


def _ordinal_name(base: str, i: int) -> str:
    # kind numbers workers worker, worker2, worker3, ...
    return base if i == 0 else f"{base}{i + 1}"


def make_node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "16Gi",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    gpus: int = 0,
    gpu_product: str = "NVIDIA-H200",
    gpu_memory_mib: int = 143771,
    gpu_resource: str = GPU_RESOURCE,
    pods: int = 110,
    ready: bool = True,
    sharing: Sharing | None = None,
    plugin_sharing: Sharing | None = None,
) -> Obj:
    """One Node as kubelet (plus gpu-feature-discovery and the device plugin) would register it."""
    all_labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    annotations: dict[str, str] = {"node.alpha.kubernetes.io/ttl": "0"}
    capacity: dict[str, str] = {
        "cpu": cpu, "memory": memory, "pods": str(pods), "ephemeral-storage": "100Gi",
        "hugepages-1Gi": "0", "hugepages-2Mi": "0",
    }
    if gpus and gpu_resource == GPU_RESOURCE:
        # The simulated device plugin and gpu-feature-discovery (harness/sim/deviceplugin.py): whole GPUs,
        # MIG devices or time-sliced replicas, as the profile's gpu.sharing and the plugin's config say.
        uuids = [gpu_uuid(name, i) for i in range(gpus)]
        hardware = sharing or NO_SHARING
        gfd_labels, advertised, plugin_notes = advertise(name, uuids, gpu_product, gpu_memory_mib, hardware,
                                                         plugin_sharing or hardware)
        all_labels.update(gfd_labels)
        capacity.update(advertised)
        annotations.update(plugin_notes)
        annotations[GPU_UUIDS_ANNOTATION] = ",".join(uuids)
    elif gpus:
        all_labels.update({
            GPU_PRESENT_LABEL: "true",
            PRODUCT_LABEL: gpu_product,
            COUNT_LABEL: str(gpus),
            MEMORY_LABEL: str(gpu_memory_mib),
        })
        capacity[gpu_resource] = str(gpus)
        annotations[GPU_UUIDS_ANNOTATION] = ",".join(gpu_uuid(name, i) for i in range(gpus))
    all_labels.update(labels or {})
    stamp = now_rfc3339()
    conditions = [
        {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": stamp,
         "lastTransitionTime": stamp}
        for t, r, m in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    conditions.append({
        "type": "Ready", "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "kubelet is posting ready status" if ready else "container runtime network not ready",
        "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
    })
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "annotations": annotations},
        "spec": {"podCIDR": "10.244.0.0/24", "providerID": f"sim://{name}", "taints": list(taints or [])},
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": gpu_uuid(name, 999)[4:],
                "containerRuntimeVersion": "containerd://2.0.2",
                "kernelVersion": "6.8.0-sim",
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": gpu_uuid(name, 998)[4:].replace("-", ""),
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": gpu_uuid(name, 997)[4:],
            },
        },
    }


def build_nodes(profile: Profile) -> list[Obj]:
    """Control plane, CPU workers and GPU workers named the way kind names them."""
    cluster = profile.cluster
    base = cluster.name
    spec = cluster.nodes
    nodes = [make_node(
        f"{base}-control-plane",
        cpu=spec.control_plane.cpu,
        memory=spec.control_plane.memory,
        labels={CONTROL_PLANE_ROLE: "", "node.kubernetes.io/exclude-from-external-load-balancers": "",
                **spec.control_plane.labels},
        taints=[{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}],
    )]
    for i in range(spec.cpu_workers.count):
        nodes.append(make_node(
            _ordinal_name(f"{base}-worker", i), cpu=spec.cpu_workers.cpu, memory=spec.cpu_workers.memory,
            labels=dict(spec.cpu_workers.labels),
        ))
    gpu = profile.gpu
    ordinal = 0
    for group in spec.gpu_workers:
        for _ in range(group.count):
            nodes.append(make_node(
                _ordinal_name(f"{base}-gpu-worker", ordinal),
                cpu=group.cpu, memory=group.memory,
                labels={gpu.pool_label.key: gpu.pool_label.value, **group.labels},
                taints=[gpu.taint.as_k8s()],
                gpus=group.gpus, gpu_product=group.product, gpu_memory_mib=group.memory_mib,
                gpu_resource=gpu.resource_name, sharing=gpu.shared(), plugin_sharing=gpu.shared(plugin=True),
            ))
            ordinal += 1
    return nodes


def register_node(store: Store, node: Obj) -> Obj:
    """Create a node (keeping its status, as node registration does); an existing one is kept."""
    meta = node["metadata"]
    existing = store.get("v1", "Node", meta["name"])
    if existing is not None:
        return existing
    try:
        created = store.create(node)
    except ApiError as exc:
        if exc.code != 409:
            raise
        found = store.get("v1", "Node", meta["name"])
        assert found is not None
        return found
    if (created.get("status") or {}).get("conditions") != node["status"]["conditions"]:
        created = store.update_status({**created, "status": node["status"]})
    return created


def bootstrap_nodes(store: Store, profile: Profile) -> list[Obj]:
    return [register_node(store, n) for n in build_nodes(profile)]


def core_controllers(workdir: str | None = None, store: Store | None = None,
                     driver_cache: str | None = None) -> list[Any]:
    """The node-side controllers in the order the runtime should run them.

    Node lifecycle first (taints decide placement and eviction), then the workload controllers that
    create pods, then the scheduler that binds them, then the kubelet that runs them.
    """
    from harness.sim.disruption import DisruptionController
    from harness.sim.jobs import JobController
    from harness.sim.kubelet import KubeletController
    from harness.sim.namespaces import NamespaceController
    from harness.sim.node_lifecycle import NodeLifecycleController
    from harness.sim.scheduler import SchedulerController
    from harness.sim.workloads import DaemonSetController, DeploymentController, StatefulSetController

    return [
        NodeLifecycleController(store=store),
        StatefulSetController(),
        DeploymentController(),
        DaemonSetController(),
        JobController(),
        SchedulerController(),
        KubeletController(workdir=workdir, driver_cache=driver_cache, store=store),
        NamespaceController(),
        DisruptionController(),
    ]
