"""Shared GPUs: the resource names, labels and capacities of MIG and time-slicing, one definition.

Facts from NVIDIA/k8s-device-plugin tag v0.17.1 (commit 3c378193fcebf6e955f0d65bd6f2aeed099ad8ea),
which also holds gpu-feature-discovery (GFD):
- api/config/v1/consts.go: MIG strategies `none|single|mixed`; the default shared rename suffix
  `.shared` (`DefaultSharedResourceNameSuffix`), resource prefix `nvidia.com`.
- api/config/v1/replicas.go, sharing.go: config keys `sharing.timeSlicing.{renameByDefault,
  failRequestsGreaterThanOne, resources[].{name, replicas}}`; sharing strategies `none`,
  `time-slicing`, `mps`.
- internal/rm/device_map.go: a replicated resource is advertised as `replicas` devices per GPU
  (`<id>::<n>`), under `rename` when set; internal/rm/allocate.go spreads a request over the GPUs
  with the most free replicas; internal/plugin/server.go strips the `::<n>` and puts the plain UUIDs
  (duplicates kept) in NVIDIA_VISIBLE_DEVICES; internal/rm/rm.go refuses more than one replica per
  container only with failRequestsGreaterThanOne.
- internal/rm/rm.go (AddDefaultResourcesToConfig): `single` advertises MIG devices as
  `nvidia.com/gpu`; `mixed` as `nvidia.com/mig-<profile>` ("+" in a profile becomes ".").
- internal/lm/resource.go and mig-strategy.go (GFD): labels `<resource>.product|count|replicas|
  sharing-strategy|memory` for `nvidia.com/gpu` and, under `mixed`, for each `nvidia.com/mig-<profile>`;
  `nvidia.com/mig.strategy`; the product is the parts joined with "-" (spaces become "-"):
  `<model>[-MIG-<profile>][-SHARED]`, `-SHARED` only when replicated and not renamed; under
  `single` the GPU labels describe the MIG devices (count = MIG devices, memory = one slice's).

GKE (cloud.google.com/kubernetes-engine/docs/concepts/timesharing-gpus): time-sharing node pools carry
`cloud.google.com/gke-gpu-sharing-strategy: time-sharing` and
`cloud.google.com/gke-max-shared-clients-per-gpu: "<n>"`, and the resource stays `nvidia.com/gpu`.

This module imports nothing else of the harness; `harness.config.Gpu.shared()` turns the profile's
`gpu.sharing` into a `Sharing` (plain values here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from harness.k8s.quantity import quantity_or_zero

GPU_RESOURCE = "nvidia.com/gpu"
SHARED_SUFFIX = ".shared"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
SHARING_STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
MIG_CAPABLE_LABEL = "nvidia.com/mig.capable"

GKE_SHARING_STRATEGY_LABEL = "cloud.google.com/gke-gpu-sharing-strategy"
GKE_MAX_SHARED_CLIENTS_LABEL = "cloud.google.com/gke-max-shared-clients-per-gpu"
# The seed's label for GPUs per GKE node; not found in Google's documentation (docs/gpu-sharing.md), so
# it is read only on platform gke where no GFD count label exists, and named wherever it is used.
GKE_ACCELERATOR_COUNT_LABEL = "cloud.google.com/gke-accelerator-count"

# A MIG profile as it appears in a resource name: "1g.5gb", "1g.10gb.me" (NVML's "+me" with "." for "+").
_MIG_PROFILE = re.compile(r"^[1-8]g\.[0-9]+gb(\.me)?$")
_MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-([1-8]g\.[0-9]+gb(?:\.me)?)(\.shared)?$")


def is_gpu_resource(name: str) -> bool:
    """`nvidia.com/gpu`, its shared rename `nvidia.com/gpu.shared`, or a MIG resource (renamed or not)."""
    return name in (GPU_RESOURCE, GPU_RESOURCE + SHARED_SUFFIX) or bool(_MIG_RESOURCE.match(name))


def mig_resource(profile: str) -> str:
    """The mixed strategy's resource for one MIG profile: `nvidia.com/mig-1g.5gb`."""
    profile = profile.replace("+", ".")
    if not _MIG_PROFILE.match(profile):
        raise ValueError(f"not a MIG profile: {profile!r} (expected like 1g.5gb)")
    return MIG_RESOURCE_PREFIX + profile


def mig_profile_of_resource(name: str) -> str | None:
    match = _MIG_RESOURCE.match(name)
    return match.group(1) if match else None


def shared_name(resource: str, rename: bool) -> str:
    return resource + SHARED_SUFFIX if rename else resource


def gpu_resources(values: Mapping[str, Any] | None) -> dict[str, Fraction]:
    """The GPU resources (whole GPUs, shared replicas, MIG devices) in a requests/limits/capacity map."""
    return {str(k): quantity_or_zero(v) for k, v in (values or {}).items() if is_gpu_resource(str(k))}


def container_gpu_resources(container: Mapping[str, Any]) -> dict[str, tuple[Fraction | None, Fraction | None]]:
    """Every GPU resource a container names, as (request, limit); None where one is unset."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    out: dict[str, tuple[Fraction | None, Fraction | None]] = {}
    for name in sorted({*requests, *limits}):
        if is_gpu_resource(str(name)):
            out[str(name)] = (quantity_or_zero(requests[name]) if name in requests else None,
                              quantity_or_zero(limits[name]) if name in limits else None)
    return out


def node_gpu_resources(node: Mapping[str, Any]) -> dict[str, int]:
    """GPU resources the node advertises (allocatable, else capacity), by name; zero counts dropped."""
    status = node.get("status") or {}
    for section in ("allocatable", "capacity"):
        values = gpu_resources(status.get(section))
        if values:
            return {k: int(v) for k, v in sorted(values.items()) if v > 0}
    return {}


@dataclass(frozen=True)
class Sharing:
    """How one cluster's GPUs are shared, in plain values (the profile's `gpu.sharing`)."""

    mig_strategy: str = "none"  # none | single | mixed
    mig_profiles: tuple[str, ...] = ()  # MIG devices configured on each GPU
    replicas: int = 1  # time-slicing replicas per GPU or MIG device (1: not shared)
    rename: bool = False
    fail_requests_greater_than_one: bool = False
    platform: str = "nvidia"  # nvidia | gke
    base_resource: str = GPU_RESOURCE

    @property
    def mig(self) -> bool:
        return self.mig_strategy in ("single", "mixed") and bool(self.mig_profiles)

    @property
    def shared(self) -> bool:
        return self.replicas > 1

    @property
    def mode(self) -> str:
        parts = [p for p, on in (("mig", self.mig), ("time-slicing", self.shared)) if on]
        return "+".join(parts) or "none"

    def per_gpu(self) -> dict[str, int]:
        """What one physical GPU adds to a node's capacity, by resource name."""
        if self.mig_strategy == "mixed" and self.mig_profiles:
            out: dict[str, int] = {}
            for profile in self.mig_profiles:
                name = shared_name(mig_resource(profile), self.rename and self.shared)
                out[name] = out.get(name, 0) + self.replicas
            return out
        units = len(self.mig_profiles) if self.mig else 1
        return {shared_name(self.base_resource, self.rename and self.shared): units * self.replicas}

    def node_capacity(self, gpus: int) -> dict[str, int]:
        """A node with `gpus` physical GPUs advertises GPUs x (MIG devices per GPU) x replicas."""
        return {name: n * gpus for name, n in self.per_gpu().items()} if gpus else {}

    def resource_for(self, mig_profile: str | None = None) -> str:
        """The resource a GPU Server requests: a MIG profile's own resource under `mixed`, else the GPU one."""
        if mig_profile is not None:
            return shared_name(mig_resource(mig_profile), self.rename and self.shared)
        if self.mig_strategy == "mixed" and self.mig_profiles:
            return shared_name(mig_resource(self.mig_profiles[0]), self.rename and self.shared)
        return shared_name(self.base_resource, self.rename and self.shared)

    def resources(self) -> tuple[str, ...]:
        """Every GPU resource name this sharing advertises."""
        return tuple(self.per_gpu())


NO_SHARING = Sharing()


def gfd_product(*parts: str, shared: bool = False) -> str:
    """GFD's product label: each part sanitised (characters outside [A-Za-z0-9-_. ] dropped, runs of
    blanks become "-"), joined with "-", plus "-SHARED" for replicated resources that are not renamed
    (internal/lm/resource.go getProductName/sanitise)."""
    pieces = ["-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", p).split()) for p in parts if p]
    pieces = [p for p in pieces if p]
    if shared and pieces:
        pieces.append("SHARED")
    return "-".join(pieces)


def product_label_for(sharing: Sharing, model: str, mig_profile: str | None = None) -> str:
    """The `.product` label GFD writes for `model` (an NVML device name) under `sharing`: the
    full-GPU label, or under MIG the MIG devices' (`<model>-MIG-<profile>`)."""
    shared = sharing.shared and not sharing.rename
    if sharing.mig and mig_profile:
        return gfd_product(model, "MIG", mig_profile, shared=shared)
    return gfd_product(model, shared=shared)


def mig_memory_mib(profile: str) -> int:
    """A MIG device's memory from its profile name ("1g.5gb" -> 5 GiB): an approximation (NVML reports a
    little less), used where no GFD label says."""
    match = re.match(r"^\d+g\.(\d+)gb", profile)
    return int(match.group(1)) * 1024 if match else 0


def gfd_labels(model: str, gpus: int, memory_mib: int, sharing: Sharing,
               mig_profiles: Sequence[str] = ()) -> dict[str, str]:
    """The GPU labels GFD writes for `gpus` GPUs that NVML names `model`, each with `mig_profiles` MIG
    devices (empty: MIG off), under a device plugin config `sharing` (internal/lm/resource.go,
    mig-strategy.go): MIG devices are labelled only under `single`/`mixed` on MIG-enabled GPUs."""
    strategy = sharing.mig_strategy if mig_profiles else "none"
    shared = sharing.shared and not sharing.rename
    replicas, how = str(sharing.replicas), ("time-slicing" if sharing.shared else "none")
    labels = {MIG_CAPABLE_LABEL: "true" if mig_profiles else "false"}
    if strategy == "none":
        labels.update({PRODUCT_LABEL: gfd_product(model, shared=shared), COUNT_LABEL: str(gpus),
                       MEMORY_LABEL: str(memory_mib), REPLICAS_LABEL: replicas, SHARING_STRATEGY_LABEL: how})
    elif strategy == "single":
        labels.update({PRODUCT_LABEL: gfd_product(model, "MIG", mig_profiles[0], shared=shared),
                       COUNT_LABEL: str(gpus * len(mig_profiles)), MEMORY_LABEL: str(mig_memory_mib(mig_profiles[0])),
                       REPLICAS_LABEL: replicas, SHARING_STRATEGY_LABEL: how, MIG_STRATEGY_LABEL: "single"})
    else:
        # Full-GPU labels without sharing for MIG-enabled GPUs (replicas 0), then one set per MIG profile.
        labels.update({PRODUCT_LABEL: gfd_product(model), COUNT_LABEL: str(gpus), MEMORY_LABEL: str(memory_mib),
                       REPLICAS_LABEL: "0", SHARING_STRATEGY_LABEL: "none", MIG_STRATEGY_LABEL: "mixed"})
        for profile in dict.fromkeys(mig_profiles):
            base = mig_resource(profile)
            labels.update({f"{base}.product": gfd_product(model, "MIG", profile, shared=shared),
                           f"{base}.count": str(gpus * list(mig_profiles).count(profile)),
                           f"{base}.memory": str(mig_memory_mib(profile)), f"{base}.replicas": replicas,
                           f"{base}.sharing-strategy": how})
    return labels


def node_replicas(labels: Mapping[str, str], resource: str = GPU_RESOURCE) -> int | None:
    """Replicas per device the node says it advertises (GFD's `<resource>.replicas`, GKE's max shared
    clients), None when no label says."""
    base = resource[: -len(SHARED_SUFFIX)] if resource.endswith(SHARED_SUFFIX) else resource
    for key in (f"{base}.replicas", GKE_MAX_SHARED_CLIENTS_LABEL):
        text = labels.get(key)
        if text is not None and str(text).isdigit():
            return int(text)
    return None


def capacity_problems(node: Mapping[str, Any], sharing: Sharing) -> list[str]:
    """Where a node's advertised GPU resources differ from its devices x the profile's replicas.

    The devices come from GFD's `<resource>.count` labels (GPUs, or MIG devices under `single`, or one
    count per MIG profile under `mixed`); the node must advertise exactly `sharing.resources()`, each
    count x `sharing.replicas`. Empty when they agree, else one line per resource naming what the node
    advertises and the product expected."""
    meta = node.get("metadata") or {}
    name = meta.get("name", "?")
    labels = meta.get("labels") or {}
    have = node_gpu_resources(node)
    problems = []
    if sharing.platform == "gke" and sharing.shared:
        # GKE's time-sharing labels (cloud.google.com/kubernetes-engine/docs/concepts/timesharing-gpus).
        strategy, clients = labels.get(GKE_SHARING_STRATEGY_LABEL), labels.get(GKE_MAX_SHARED_CLIENTS_LABEL)
        if strategy != "time-sharing" or clients != str(sharing.replicas):
            problems.append(f"node {name} has {GKE_SHARING_STRATEGY_LABEL}={strategy!r}, "
                            f"{GKE_MAX_SHARED_CLIENTS_LABEL}={clients!r}; expected 'time-sharing' and "
                            f"'{sharing.replicas}'")
    for resource in sorted(set(have) | set(sharing.resources())):
        base = resource.removesuffix(SHARED_SUFFIX)
        count_key = f"{base}.count"
        if sharing.platform == "gke" and count_key not in labels and GKE_ACCELERATOR_COUNT_LABEL in labels:
            count_key = GKE_ACCELERATOR_COUNT_LABEL
        count_text = str(labels.get(count_key, ""))
        got = have.get(resource, 0)
        if resource not in sharing.resources():
            problems.append(f"node {name} advertises {got} {resource}, which gpu.sharing ({sharing.mode}) "
                            f"does not use (expected {', '.join(sharing.resources())})")
            continue
        if not count_text.isdigit():
            problems.append(f"node {name} has no {count_key} label (gpu-feature-discovery), so its "
                            f"{got} {resource} cannot be checked against {sharing.replicas} replica(s) per device")
            continue
        expected = int(count_text) * sharing.replicas
        if got != expected:
            problems.append(f"node {name} advertises {got} {resource}, expected {expected} "
                            f"({count_key} {count_text} x {sharing.replicas} replica(s), gpu.sharing {sharing.mode})")
    return problems


def offered(nodes: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """GPU resource name -> nodes that advertise it."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        for resource in node_gpu_resources(node):
            out.setdefault(resource, []).append(str((node.get("metadata") or {}).get("name", "?")))
    return out
