"""Pure GPU-visibility verdicts over parsed NVML probe results (harness/gpu/result.py).

Every function returns a list of `Verdict(id, ok, reason)`; a suite asserts `all(v.ok ...)` and
prints the failing reasons. A verdict is only emitted when the evidence for it exists: with no
known allocation there is no `gpu.allocation` verdict (a pass there would be a lie). Sets of UUIDs
are compared, never indices: indices are renumbered inside every container.

Verdict ids: gpu.nvml, gpu.probe-errors, gpu.count, gpu.no-gpu-without-request, gpu.allocation,
gpu.node-subset, gpu.product, gpu.disjoint, gpu.in-use, gpu.host-matches-cluster; for shared GPUs
gpu.mig-devices, gpu.sharing-product, gpu.shared, gpu.shared-capacity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from harness.gpu.result import ProbeDevice, ProbeResult
from harness.k8s.sharing import (
    PRODUCT_LABEL,
    Sharing,
    capacity_problems,
    mig_resource,
    node_gpu_resources,
    product_label_for,
)

# NotSupported never reaches `errors` (the probe treats it as an answer); these are benign too.
_BENIGN_ERRORS = frozenset({"NVMLError_LibraryNotFound"})


@dataclass(frozen=True)
class Verdict:
    """One check's outcome. `reason` is one readable line naming pod, node and the sets involved."""

    id: str
    ok: bool
    reason: str


def failed(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.ok]


def _fmt(uuids: Iterable[str]) -> str:
    items = sorted(uuids)
    return "{" + ", ".join(items) + "}" if items else "{}"


def gfd_product_label(nvml_name: str, *parts: str) -> str:
    """The `nvidia.com/gpu.product` value gpu-feature-discovery derives from an NVML device name.

    GFD replaces spaces with '-' in each part and joins the parts with '-': "NVIDIA H200" ->
    "NVIDIA-H200"; with the MIG `single` strategy it appends "MIG" and the MIG profile
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"); time-sliced GPUs that are not renamed get "-SHARED".
    """
    pieces = [p.replace(" ", "-") for p in (nvml_name, *parts) if p]
    return "-".join(pieces)


def product_matches(nvml_name: str, label: str) -> bool:
    """Does the node's product label describe a GPU that NVML names `nvml_name`?"""
    base = gfd_product_label(nvml_name)
    return label == base or label == base + "-SHARED" or label.startswith(base + "-MIG-")


def _where(result: ProbeResult, node: str | None) -> str:
    return f"pod {result.source} on node {node or '?'}"


def _env_note(result: ProbeResult) -> str:
    env = result.env
    files = "absent" if env.container_device_files is None else _fmt(env.container_device_files)
    return f"NVIDIA_VISIBLE_DEVICES={env.nvidia_visible_devices!r}, /var/run/nvidia-container-devices {files}"


def _parents_and_own(device: ProbeDevice) -> set[str]:
    return {u for u in (device.uuid, *device.visible_uuids) if u}


def check_pod_visibility(
    result: ProbeResult,
    requested: int,
    node_gpu_uuids: Set[str] | None,
    node_product_label: str | None,
    allocated_uuids: Set[str] | None,
    *,
    node: str | None = None,
) -> list[Verdict]:
    """What a pod's probe saw, against what it asked for and what its node has.

    `requested`: the pod's `nvidia.com/gpu` limit (0 for a pod that asked for none).
    `node_gpu_uuids`: the node's GPU (or MIG) UUIDs where known (sim, host NVML, a node probe).
    `node_product_label`: the node's `nvidia.com/gpu.product` label, None if absent.
    `allocated_uuids`: what the device plugin gave the pod where the strategy exposes it (see
    `harness.gpu.result.allocated_uuids_from_env`); None when unknown.
    """
    where = _where(result, node)
    seen = result.visible_uuids if result.nvml_available else frozenset()
    verdicts: list[Verdict] = []

    if requested > 0:
        ok = result.nvml_available
        reason = (
            f"{where}: NVML available, driver {result.driver_version}"
            if ok
            else f"{where} requested {requested} GPU(s) but NVML is unavailable ({result.errors_text()}); "
            f"{_env_note(result)}"
        )
        verdicts.append(Verdict("gpu.nvml", ok, reason))
        if not ok:
            return verdicts

    unexpected = [e for e in result.errors if e.error not in _BENIGN_ERRORS]
    verdicts.append(
        Verdict(
            "gpu.probe-errors",
            not unexpected,
            f"{where}: probe errors: " + ("; ".join(f"{e.call}: {e.error}: {e.message}" for e in unexpected) or "none"),
        )
    )

    if requested == 0:
        ok = not seen
        reason = (
            f"{where} requested no GPU and sees none"
            if ok
            else f"{where} requested no GPU but sees {len(seen)}: {_fmt(seen)} ({_env_note(result)}; "
            "an image default such as NVIDIA_VISIBLE_DEVICES=all leaks GPUs to pods that did not ask)"
        )
        verdicts.append(Verdict("gpu.no-gpu-without-request", ok, reason))
    else:
        ok = len(seen) == requested
        verdicts.append(
            Verdict(
                "gpu.count",
                ok,
                f"{where} requested {requested} GPU(s) and sees {len(seen)}: {_fmt(seen)} ({_env_note(result)})",
            )
        )

    if allocated_uuids is not None and requested > 0:
        allocated = frozenset(allocated_uuids)
        ok = seen == allocated
        detail = "" if ok else f"; missing {_fmt(allocated - seen)}, unexpected {_fmt(seen - allocated)}"
        verdicts.append(
            Verdict(
                "gpu.allocation",
                ok,
                f"{where} sees {_fmt(seen)}, allocated {_fmt(allocated)}{detail}",
            )
        )

    if node_gpu_uuids is not None and seen:
        node_set = frozenset(node_gpu_uuids)
        # A MIG device belongs to the node when the MIG UUID or its parent GPU is one of the node's.
        foreign = sorted(
            u
            for d in result.devices
            for u in d.visible_uuids
            if u not in node_set and not (_parents_and_own(d) & node_set)
        )
        ok = not foreign
        reason = f"{where} sees {_fmt(seen)}, node GPUs {_fmt(node_set)}"
        verdicts.append(Verdict("gpu.node-subset", ok, reason + ("" if ok else f"; not on the node: {_fmt(foreign)}")))

    if node_product_label is not None and seen:
        names = sorted({d.name or "<unknown>" for d in result.devices if d.visible_uuids})
        bad = [n for n in names if not product_matches(n, node_product_label)]
        expected = ", ".join(gfd_product_label(n) for n in names)
        ok = not bad
        verdicts.append(
            Verdict(
                "gpu.product",
                ok,
                f"{where}: NVML names {names} (label form {expected}), node label "
                f"nvidia.com/gpu.product={node_product_label!r}" + ("" if ok else f"; mismatch for {bad}"),
            )
        )
    return verdicts


def _pair_evidence(results_by_pod: Mapping[str, ProbeResult], what: str) -> tuple[str, list[str]]:
    """(what each pod saw, why that is no evidence): fewer than two pods, or a pod that saw no GPU."""
    pods = sorted(results_by_pod)
    seen = "; ".join(f"{p}: {_fmt(results_by_pod[p].visible_uuids)}" for p in pods)
    problems = []
    if len(pods) < 2:
        problems.append(f"{len(pods)} pod(s): {what} needs two")
    blind = [p for p in pods if not results_by_pod[p].nvml_available or not results_by_pod[p].visible_uuids]
    if blind:
        problems.append("no GPU seen by " + ", ".join(blind))
    return seen, problems


def check_disjoint(results_by_pod: Mapping[str, ProbeResult], *, node: str | None = None,
                   shared: bool = False) -> list[Verdict]:
    """Pods on one node must get disjoint GPUs (or MIG devices): one verdict naming every overlapping
    pair. Fewer than two pods, or a pod that saw no GPU (NVML unavailable included), is no evidence: a
    failure. `shared`: the GPUs are time-sliced, where overlap is expected (`check_shared` reports it)."""
    if shared:
        return check_shared(results_by_pod, node=node)
    pods = sorted(results_by_pod)
    overlaps = []
    for i, a in enumerate(pods):
        for b in pods[i + 1 :]:
            common = results_by_pod[a].visible_uuids & results_by_pod[b].visible_uuids
            if common:
                overlaps.append(f"{a} and {b} share {_fmt(common)}")
    seen, problems = _pair_evidence(results_by_pod, "disjointness")
    reason = f"pods on node {node or '?'}: {seen or 'none'}"
    if overlaps:
        problems.append("overlap: " + "; ".join(overlaps))
    return [Verdict("gpu.disjoint", not problems, reason + "".join(f"; {p}" for p in problems))]


def check_gpu_in_use(
    result: ProbeResult,
    uuids: Set[str],
    *,
    node: str | None = None,
    min_device_memory_bytes: int | None = None,
) -> list[Verdict]:
    """A compute process with memory used on one of `uuids` (the server's GPUs).

    The probe must see the server's GPU (exec it in the server container, or run it in a pod given
    that GPU). NVML reports HOST pids even inside a container (the driver ignores PID namespaces),
    so the evidence is a compute process with memory on the GPU, never a pid match. Where process
    listing is unavailable (some vGPU/sharing setups hide it), pass `min_device_memory_bytes` to
    accept device memory used at or above it instead.
    """
    where = _where(result, node)
    wanted = frozenset(uuids)
    if not result.nvml_available:
        return [
            Verdict("gpu.in-use", False, f"{where}: NVML unavailable ({result.errors_text()}); GPUs {_fmt(wanted)}")
        ]
    evidence: list[str] = []
    looked: list[str] = []
    for device in result.devices:
        mine = _parents_and_own(device) & wanted
        if not mine:
            continue
        procs = device.compute_processes
        using = [(device.uuid, p) for p in procs or () if (p.used_memory_bytes or 0) > 0]
        # With MIG on, a MIG device's processes are listed on the MIG device itself.
        for mig in device.mig_devices:
            if mig.uuid in wanted or device.uuid in wanted:
                using += [(mig.uuid, p) for p in mig.compute_processes or () if (p.used_memory_bytes or 0) > 0]
        looked.append(
            f"{device.uuid}: {len(procs) if procs is not None else 'unknown'} process(es), "
            f"memory used {device.memory_used_bytes} B"
        )
        evidence += [f"pid {p.pid} uses {p.used_memory_bytes} B on {uuid}" for uuid, p in using]
        if not using and min_device_memory_bytes is not None:
            # MIG slices report memory per MIG device; the parent may be unreadable from the container.
            usage = [(device.uuid, device.memory_used_bytes)] + [
                (m.uuid, m.memory_used_bytes) for m in device.mig_devices if m.uuid in wanted or device.uuid in wanted
            ]
            evidence += [
                f"{uuid} has {used} B used (>= {min_device_memory_bytes})"
                for uuid, used in usage
                if (used or 0) >= min_device_memory_bytes
            ]
    if not looked:
        return [
            Verdict(
                "gpu.in-use",
                False,
                f"{where} cannot see the server's GPUs {_fmt(wanted)}; sees {_fmt(result.visible_uuids)}",
            )
        ]
    ok = bool(evidence)
    reason = f"{where}: " + (
        "; ".join(evidence) if ok else "no compute process uses " + _fmt(wanted) + " (" + "; ".join(looked) + ")"
    )
    return [Verdict("gpu.in-use", ok, reason)]


def memory_held(result: ProbeResult) -> dict[str, int]:
    """Memory held by compute processes per device UUID; with MIG on, per MIG device as well (NVML lists
    a MIG device's processes on the MIG device's own handle, not on its parent)."""
    held: dict[str, int] = {}
    for d in result.devices:
        if d.uuid:
            held[d.uuid] = sum(p.used_memory_bytes or 0 for p in d.compute_processes or ())
        for mig in d.mig_devices:
            if mig.uuid:
                held[mig.uuid] = sum(p.used_memory_bytes or 0 for p in mig.compute_processes or ())
    return held


def check_host_matches_cluster(
    host_uuids: Set[str],
    cluster_uuids: Set[str],
    *,
    allow_unused_host_gpus: bool = False,
    unavailable: Sequence[str] = (),
) -> list[Verdict]:
    """The GPUs host NVML reports are exactly the GPUs seen inside the cluster.

    `allow_unused_host_gpus`: the profile hands only some host GPUs to kind workers (`host_gpus`),
    so the cluster's set need only be a subset of the host's. `unavailable`: the probes (by source)
    that reported NVML unavailable. Never vacuous: no GPU on the host, no GPU seen in the cluster, or
    a probe without NVML is a failure, not an empty set that trivially matches.
    """
    host, cluster = frozenset(host_uuids), frozenset(cluster_uuids)
    reason = f"host NVML {_fmt(host)}, cluster {_fmt(cluster)}"
    problems = []
    if unavailable:
        problems.append(f"NVML unavailable in {', '.join(sorted(unavailable))}")
    if not host:
        problems.append("host NVML sees no GPU")
    if not cluster:
        problems.append("no GPU was seen in the cluster")
    ok = cluster <= host if allow_unused_host_gpus else host == cluster
    if not ok:
        problems.append(f"only on host {_fmt(host - cluster)}, only in cluster {_fmt(cluster - host)}")
    return [Verdict("gpu.host-matches-cluster", not problems, reason + "".join(f"; {p}" for p in problems))]


# --- shared GPUs: MIG and time-slicing (harness/k8s/sharing.py holds the device plugin's rules) -------


def mig_profile_of(nvml_name: str | None) -> str | None:
    """The MIG profile in a MIG device's NVML name ("NVIDIA A100-SXM4-40GB MIG 1g.5gb" -> "1g.5gb")."""
    if not nvml_name or " MIG " not in nvml_name:
        return None
    return nvml_name.rsplit(" MIG ", 1)[1].strip().replace("+", ".") or None


def check_mig_devices(result: ProbeResult, requested: int, *, node: str | None = None) -> list[Verdict]:
    """Under MIG a pod sees exactly its MIG device(s): MIG UUIDs only, each with its parent GPU named."""
    where = _where(result, node)
    seen: list[str] = []
    problems: list[str] = []
    for device in result.devices:
        if device.mig_enabled and device.mig_devices:
            for mig in device.mig_devices:
                profile = mig_profile_of(mig.name) or "?"
                seen.append(f"{mig.uuid} ({profile}) on {device.uuid or 'an unnamed GPU'}")
                if not (mig.uuid or "").startswith("MIG-"):
                    problems.append(f"{mig.uuid} is not a MIG UUID")
                if not device.uuid:
                    problems.append(f"the parent GPU of {mig.uuid} is not named")
        elif device.visible_uuids:
            seen.append(f"{device.uuid} (a whole GPU{', MIG mode off' if device.mig_current == 0 else ''})")
            problems.append(f"{device.uuid} is a whole GPU, not a MIG device")
    if not result.nvml_available or not seen:
        problems.append("no MIG device seen" + ("" if result.nvml_available else f" ({result.errors_text()})"))
    elif len(seen) != requested:
        problems.append(f"requested {requested} MIG device(s) but sees {len(seen)}")
    reason = f"{where} sees {'; '.join(seen) or 'nothing'}"
    return [Verdict("gpu.mig-devices", not problems, reason + "".join(f"; {p}" for p in problems))]


def expected_product_labels(result: ProbeResult, sharing: Sharing) -> dict[str, str]:
    """Label key -> the `.product` value GFD derives from what NVML names (the parent's name and the MIG
    profile under MIG), for the devices this pod sees. Computed from the NVML name actually seen, so the
    A100 that older drivers name "A100-SXM4-40GB" gets the label without the NVIDIA- prefix."""
    out: dict[str, str] = {}
    for device in result.devices:
        if not device.visible_uuids or not device.name:
            continue
        if device.mig_enabled and device.mig_devices:
            for mig in device.mig_devices:
                profile = mig_profile_of(mig.name)
                key = (f"{mig_resource(profile)}.product" if sharing.mig_strategy == "mixed" and profile
                       else PRODUCT_LABEL)
                out[key] = product_label_for(sharing, device.name, profile)
        else:
            out[PRODUCT_LABEL] = product_label_for(sharing, device.name)
    return out


def check_sharing_product(result: ProbeResult, labels: Mapping[str, str], sharing: Sharing, *,
                          node: str | None = None) -> list[Verdict]:
    """The node's product label(s) carry what sharing adds: `-MIG-<profile>` for the MIG devices the pod
    sees, `-SHARED` for time-sliced devices that are not renamed (gpu-feature-discovery's rule)."""
    where = _where(result, node)
    wanted = expected_product_labels(result, sharing) if result.nvml_available else {}
    if not wanted:
        return [Verdict("gpu.sharing-product", False, f"{where}: no named device seen to derive the label from")]
    bad = [f"{k}={labels.get(k)!r}, expected {v!r}" for k, v in sorted(wanted.items()) if labels.get(k) != v]
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(wanted.items()))
    reason = f"{where}: labels {shown} expected from NVML and gpu.sharing {sharing.mode}"
    return [Verdict("gpu.sharing-product", not bad, reason + ("" if not bad else "; node has " + "; ".join(bad)))]


def check_shared(results_by_pod: Mapping[str, ProbeResult], *, node: str | None = None) -> list[Verdict]:
    """Time-slicing: pods sharing a GPU is expected; the verdict reports which pods share which UUID.
    Fewer than two pods, or a pod that saw no GPU, is no evidence (a failure)."""
    pods = sorted(results_by_pod)
    holders: dict[str, list[str]] = {}
    for pod in pods:
        for uuid in sorted(results_by_pod[pod].visible_uuids):
            holders.setdefault(uuid, []).append(pod)
    shared = [f"{uuid} shared by {', '.join(who)}" for uuid, who in sorted(holders.items()) if len(who) > 1]
    seen, problems = _pair_evidence(results_by_pod, "sharing")
    reason = f"pods on node {node or '?'}: {seen or 'none'}; " + ("; ".join(shared) or "no UUID shared")
    return [Verdict("gpu.shared", not problems, reason + "".join(f"; {p}" for p in problems))]


def check_shared_capacity(node: Mapping[str, Any], sharing: Sharing) -> list[Verdict]:
    """The node advertises its devices x replicas of each resource gpu.sharing uses (and nothing else)."""
    name = str((node.get("metadata") or {}).get("name", "?"))
    problems = capacity_problems(node, sharing)
    have = ", ".join(f"{k}={v}" for k, v in node_gpu_resources(node).items()) or "no GPU resource"
    reason = f"node {name} advertises {have} (gpu.sharing {sharing.mode})"
    return [Verdict("gpu.shared-capacity", not problems, reason + "".join(f"; {p}" for p in problems))]


def check_sharing(results_by_pod: Mapping[str, ProbeResult], requested: int, labels: Mapping[str, str],
                  sharing: Sharing, *, node: str | None = None) -> list[Verdict]:
    """What gpu.sharing adds to the visibility of probes on one node: under MIG each pod sees exactly
    its MIG device(s), and the node's product label(s) carry the MIG profile / `-SHARED` as GFD writes
    them from the NVML names seen. Nothing when the GPUs are not shared (the plain checks hold)."""
    if sharing.mode == "none":
        return []
    verdicts: list[Verdict] = []
    for pod, result in sorted(results_by_pod.items()):
        where = f"{node or '?'} ({pod})"
        if sharing.mig:
            verdicts += check_mig_devices(result, requested, node=where)
        verdicts += check_sharing_product(result, labels, sharing, node=where)
    return verdicts
