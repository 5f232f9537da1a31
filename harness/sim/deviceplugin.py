"""The simulated NVIDIA device plugin and gpu-feature-discovery: what a GPU node advertises and labels,
and which devices a container is handed, for whole GPUs, MIG devices and time-sliced replicas.

It follows NVIDIA/k8s-device-plugin v0.17.1 (harness/k8s/sharing.py names the files) and is never
kinder than it:
- the hardware (GPUs, the MIG devices configured on each) comes from the profile's `gpu.sharing`;
  what is advertised comes from the plugin's own config (`gpu.device_plugin.mig_strategy/replicas`
  may differ, as a plugin deployed with the wrong config does). Strategy `none` on MIG-enabled GPUs
  hands out the whole GPU, whose MIG devices the container then sees (the simulated driver's rule).
- replicas are devices `<uuid>::<n>`; a request is spread over the GPUs with the most free replicas
  (internal/rm/allocate.go); NVIDIA_VISIBLE_DEVICES lists the plain UUIDs, duplicates kept;
  `failRequestsGreaterThanOne` refuses a container asking for more than one replica at Allocate.
- labels are GFD's (internal/lm/resource.go, mig-strategy.go): product `<model>[-MIG-<profile>][-SHARED]`,
  count, memory, replicas, sharing-strategy, `nvidia.com/mig.strategy`, and under `mixed` the
  `nvidia.com/mig-<profile>.*` labels.
The node's devices travel in sim-only annotations; the harness's checks never read them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.k8s.gpu import GPU_PRESENT_LABEL
from harness.k8s.sharing import (
    GPU_RESOURCE,
    Sharing,
    gfd_labels,
    is_gpu_resource,
    mig_memory_mib,
    mig_resource,
    shared_name,
)

Obj = dict[str, Any]

# Sim-only node annotations: the NVML name of the node's GPUs, its MIG devices, the plugin's devices.
GPU_NAME_ANNOTATION = "sim.harness.dev/gpu-name"
MIG_DEVICES_ANNOTATION = "sim.harness.dev/mig-devices"
DEVICES_ANNOTATION = "sim.harness.dev/devices"
PLUGIN_ANNOTATION = "sim.harness.dev/device-plugin"
# Sim-only pod annotation: the plugin device ids a pod holds (replicas as `<uuid>::<n>`), comma separated.
ALLOCATED_DEVICES_ANNOTATION = "sim.harness.dev/allocated-devices"

_REPLICA = re.compile(r"^(.*)::(\d+)$")


@dataclass(frozen=True)
class MigDevice:
    uuid: str
    gpu: int  # index of the parent GPU on the node
    profile: str
    memory_mib: int


def mig_uuid(node_name: str, gpu: int, slot: int) -> str:
    """`MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, a pure function of (node, GPU index, slot)."""
    digest = hashlib.sha256(f"{node_name}/{gpu}/mig/{slot}".encode()).hexdigest()
    return f"MIG-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def nvml_name(product: str) -> str:
    """The NVML device name the sim gives a GPU whose profile product (label form) is `product`."""
    return product.replace("-", " ")


def mig_devices(node_name: str, gpu_uuids: list[str], profiles: Iterable[str]) -> list[MigDevice]:
    wanted = list(profiles)
    return [MigDevice(mig_uuid(node_name, g, s), g, p, mig_memory_mib(p))
            for g in range(len(gpu_uuids)) for s, p in enumerate(wanted)]


def _replicate(ids: list[str], sharing: Sharing) -> list[str]:
    if not sharing.shared:
        return ids
    return [f"{i}::{n}" for i in ids for n in range(sharing.replicas)]


def advertise(node_name: str, gpu_uuids: list[str], product: str, memory_mib: int, hardware: Sharing,
              plugin: Sharing) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(labels, capacity, annotations) of a GPU node: the GPUs (with `hardware`'s MIG devices) as the
    device plugin configured as `plugin` advertises them and GFD labels them."""
    model = nvml_name(product)
    migs = mig_devices(node_name, gpu_uuids, hardware.mig_profiles if hardware.mig else ())
    strategy = plugin.mig_strategy if migs else "none"
    devices: dict[str, list[str]] = {}
    rename = plugin.rename and plugin.shared
    if strategy == "none":
        devices[shared_name(GPU_RESOURCE, rename)] = _replicate(list(gpu_uuids), plugin)
    elif strategy == "single":
        devices[shared_name(GPU_RESOURCE, rename)] = _replicate([m.uuid for m in migs], plugin)
    else:
        for profile in dict.fromkeys(m.profile for m in migs):
            devices[shared_name(mig_resource(profile), rename)] = _replicate(
                [m.uuid for m in migs if m.profile == profile], plugin)
    labels = {GPU_PRESENT_LABEL: "true",
              **gfd_labels(model, len(gpu_uuids), memory_mib, plugin, hardware.mig_profiles if migs else ())}
    capacity = {name: str(len(ids)) for name, ids in devices.items()}
    annotations = {
        GPU_NAME_ANNOTATION: model,
        DEVICES_ANNOTATION: json.dumps(devices, sort_keys=True),
        PLUGIN_ANNOTATION: json.dumps({"fail_requests_greater_than_one": plugin.fail_requests_greater_than_one}),
    }
    if migs:
        annotations[MIG_DEVICES_ANNOTATION] = json.dumps(
            [{"uuid": m.uuid, "gpu": m.gpu, "profile": m.profile, "memory_mib": m.memory_mib} for m in migs])
    return labels, capacity, annotations


def _annotation(node: Obj, key: str) -> Any:
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(key)
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return None


def node_devices(node: Obj, fallback_gpus: list[str]) -> dict[str, list[str]]:
    """The plugin's devices per resource; a node without the annotation (created through the API, or
    with fake capacity as on kind-cpu) offers its GPUs one device each as nvidia.com/gpu."""
    found = _annotation(node, DEVICES_ANNOTATION)
    if isinstance(found, dict):
        return {str(k): [str(i) for i in v] for k, v in found.items() if isinstance(v, list)}
    return {GPU_RESOURCE: list(fallback_gpus)} if fallback_gpus else {}


def node_mig_devices(node: Obj) -> list[MigDevice]:
    found = _annotation(node, MIG_DEVICES_ANNOTATION)
    if not isinstance(found, list):
        return []
    return [MigDevice(str(m["uuid"]), int(m["gpu"]), str(m["profile"]), int(m["memory_mib"]))
            for m in found if isinstance(m, dict)]


def fail_requests_greater_than_one(node: Obj) -> bool:
    found = _annotation(node, PLUGIN_ANNOTATION)
    return isinstance(found, dict) and bool(found.get("fail_requests_greater_than_one"))


def device_uuid(device_id: str) -> str:
    """`GPU-..::2` -> `GPU-..` (internal/rm/devices.go AnnotatedID.GetID)."""
    match = _REPLICA.match(device_id)
    return match.group(1) if match else device_id


class AllocationError(Exception):
    """The plugin cannot satisfy a request; the message is what kubelet records."""


def allocate(devices: Mapping[str, list[str]], in_use: set[str], requests: Mapping[str, int],
             fail_greater_than_one: bool = False) -> list[str]:
    """Device ids for one container's GPU `requests` (resource -> count), never one in `in_use`.

    Replicas are spread like GetPreferredAllocation (internal/rm/allocate.go): each pick takes a free
    replica of the device with the fewest replicas in use so far."""
    chosen: list[str] = []
    for resource, wanted in sorted(requests.items()):
        if wanted <= 0:
            continue
        offered = list(devices.get(resource, []))
        free = [d for d in offered if d not in in_use and d not in chosen]
        if len(free) < wanted:
            raise AllocationError(
                f"Allocate failed due to requested number of devices unavailable for {resource}. "
                f"Requested: {wanted}, Available: {len(free)}, which is unexpected")
        replicated = any(_REPLICA.match(d) for d in offered)
        if replicated and wanted > 1 and fail_greater_than_one:
            raise AllocationError(
                f"Allocate failed due to rpc error: code = Unknown desc = invalid allocation request for "
                f"\"{resource}\": invalid request: maximum request size for shared resources is 1; "
                f"found {wanted}, which is unexpected")
        used: dict[str, int] = {}
        for d in offered:
            if d in in_use:
                used[device_uuid(d)] = used.get(device_uuid(d), 0) + 1
        for _ in range(wanted):
            # Stable: among equally used devices the first in the plugin's order wins.
            pick = min(free, key=lambda d: (used.get(device_uuid(d), 0), offered.index(d)))
            free.remove(pick)
            used[device_uuid(pick)] = used.get(device_uuid(pick), 0) + 1
            chosen.append(pick)
    return chosen


def container_gpu_requests(requests: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in requests.items() if is_gpu_resource(str(k)) and int(v) > 0}


def inventory(node: Obj, gpu_uuids: list[str], fallback_name: str, memory_mib: int) -> list[dict[str, Any]]:
    """The node's GPUs, with their MIG devices, in the shape harness.gpu.simnvml writes for the driver."""
    name = str(((node.get("metadata") or {}).get("annotations") or {}).get(GPU_NAME_ANNOTATION) or fallback_name)
    migs = node_mig_devices(node)
    out = []
    for i, uuid in enumerate(gpu_uuids):
        mine = [m for m in migs if m.gpu == i]
        entry: dict[str, Any] = {"uuid": uuid, "name": name, "memory_total_bytes": memory_mib * 2**20, "index": i}
        if mine:
            entry["mig_capable"] = True
            entry["mig_devices"] = [{"uuid": m.uuid, "name": f"{name} MIG {m.profile}",
                                     "memory_total_bytes": m.memory_mib * 2**20} for m in mine]
        out.append(entry)
    return out
