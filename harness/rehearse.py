"""`--rehearse`: run a profile on the simulated cluster with the profile's own shape.

Everything but the provider is kept: node counts, GPUs per worker, products, taints and labels,
Servers, Models, SLOs, load and timeouts. What only the real provider can have is dropped
(kubeconfig, context). A kind profile with GPU passthrough also gets its host simulated: the
host's GPUs are exactly the GPUs handed to the GPU workers (nvkind passes each host GPU to one
worker), read through the same NVML collection code against the simulated NVML, so the
host-versus-cluster comparison runs.

The report of a rehearsal is simulated (the gate refuses it without `--allow-simulated`) and
names the rehearsed profile (`profile`) and its own provider (`rehearsal.provider`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.config import Profile, parse_profile
from harness.k8s.sharing import MEMORY_LABEL, PRODUCT_LABEL
from harness.render.placement import runtime_class_name

SIM_GPU_ANNOTATION = "sim.harness.dev/gpu-uuids"


def rehearsal_profile(profile: Profile) -> Profile:
    """`profile` with the simulated cluster as its provider; validated again like any profile."""
    data = profile.model_dump(exclude={"source"})
    # GPU pods name the RuntimeClass the real provider would give them (kind with passthrough: `nvidia`);
    # the simulated cluster then has to have it, exactly as the real one must.
    if data["gpu"].get("runtime_class") == "detect" and profile.cluster.provider == "kind":
        resolved = runtime_class_name(profile)
        if resolved is not None:
            data["gpu"]["runtime_class"] = resolved
    data["cluster"]["provider"] = "sim"
    data["cluster"]["kubeconfig"] = None
    data["cluster"]["context"] = None
    return parse_profile({**data, "source": profile.source}, profile.source)


def simulates_host_gpus(provider: str, profile: Profile) -> bool:
    """A kind profile with GPU passthrough compares the host's GPUs with the cluster's."""
    return provider == "kind" and not profile.cluster.fake_gpus


def _product_name(label: str | None) -> str:
    # Node labels spell the NVML name with dashes (`NVIDIA-H200-NVL` for "NVIDIA H200 NVL").
    return (label or "NVIDIA GPU").replace("-", " ")


def host_gpus_from_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The simulated host's GPUs in host order: every GPU the sim gave a node, as NVML would list them."""
    gpus: list[dict[str, Any]] = []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        meta = node["metadata"]
        raw = (meta.get("annotations") or {}).get(SIM_GPU_ANNOTATION) or ""
        product = _product_name((meta.get("labels") or {}).get(PRODUCT_LABEL))
        memory_mib = int((meta.get("labels") or {}).get(MEMORY_LABEL) or 0)
        for uuid in (u.strip() for u in raw.split(",")):
            if uuid:
                gpus.append({"uuid": uuid, "name": product, "memory_total_bytes": memory_mib * 1024 * 1024,
                             "index": len(gpus)})
    return gpus


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    # The simulated NVML reads its devices from the environment at nvmlInit(); set it only around
    # the one collection and put back exactly what was there.
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def simulated_host_inventory(nodes: list[dict[str, Any]], workdir: Path) -> tuple[Any, str]:
    """(ProbeResult | None, reason) of the simulated host: the real NVML bindings and collection code
    (`harness.gpu.host`) over the simulated driver library, holding every GPU the sim gave a node."""
    from harness.gpu.host import host_inventory_with_reason
    from harness.gpu.simnvml import SimDriverError, build_library, load_simulated_bindings, prepare_driver_dir
    from harness.sim.kubelet import DEFAULT_DRIVER_CACHE

    gpus = host_gpus_from_nodes(nodes)
    if not gpus:
        return None, "the simulated cluster lists no GPU UUIDs on its nodes"
    try:
        driver = prepare_driver_dir(workdir / "rehearsal-host-driver", build_library(DEFAULT_DRIVER_CACHE), gpus)
        module = load_simulated_bindings(driver)
    except (SimDriverError, OSError) as exc:
        return None, f"the simulated host driver is unavailable: {exc}"
    # The host sees every device: no container runtime stands between it and the driver.
    with _environment({"NVIDIA_VISIBLE_DEVICES": "all"}):
        result, reason = host_inventory_with_reason(module)
    return result, f"simulated host (--rehearse): {reason}"


# --- the static equivalent of a rehearsal: which checks a profile's shape makes skip ----------
# These rules mirror the skip conditions in suites/ (each names its test). A real rehearsal of
# profiles/kind-gpu.yaml (tests/providers/test_rehearse.py) checks them against what the suites really do.
MAX_PLACEMENTS = 20_000


def _server_pods(profile: Profile) -> list[tuple[str, int]]:
    """(GPU resource, units) per GPU-Server pod, one entry per replica: whole GPUs, replicas or a MIG
    profile's devices (gpu.sharing)."""
    sharing = profile.gpu.shared()
    return [(sharing.resource_for(s.mig_profile), s.gpus) for s in profile.gpu_servers
            for _ in range(max(1, s.replicas))]


def _node_gpus(profile: Profile) -> list[dict[str, int]]:
    """What each GPU worker advertises, by GPU resource (GPUs x MIG devices x replicas)."""
    sharing = profile.gpu.shared()
    return [sharing.node_capacity(g.gpus) for g in profile.cluster.nodes.gpu_workers for _ in range(g.count)]


def _placements(nodes: list[dict[str, int]], pods: list[tuple[str, int]],
                probe: str) -> Iterator[tuple[list[int], set[int]]]:
    """Every way the scheduler could place the GPU-Server pods: (free units of the probes' resource per
    node, nodes used)."""
    def place(i: int, free: list[dict[str, int]], used: set[int]) -> Iterator[tuple[list[int], set[int]]]:
        if i == len(pods):
            yield [f.get(probe, 0) for f in free], set(used)
            return
        resource, units = pods[i]
        for n in range(len(free)):
            if free[n].get(resource, 0) >= units:
                free[n][resource] -= units
                yield from place(i + 1, free, used | {n})
                free[n][resource] += units

    yield from place(0, [dict(n) for n in nodes], set())


def _always(profile: Profile, holds: Any) -> bool:
    """Does `holds(free, used)` hold however the GPU Servers are placed? (False when unknowable.)"""
    nodes, pods = _node_gpus(profile), _server_pods(profile)
    if len(nodes) ** len(pods) > MAX_PLACEMENTS:
        return False
    seen = False
    for free, used in _placements(nodes, pods, profile.gpu.shared().resource_for()):
        seen = True
        if not holds(free, used):
            return False
    return seen


def _memory_bytes(text: str) -> int:
    from harness.k8s.quantity import parse_quantity

    return int(parse_quantity(text))


def slo_bound(profile: Profile, model: str) -> bool:
    """Does the model have a latency SLO to sweep against (the latency suite's rule)?"""
    from harness.load.sweep import latency_bound_ms

    return latency_bound_ms(profile.slo_for(model)) is not None


def expected_skips(profile: Profile, provider: str) -> dict[str, str]:
    """Check name -> why it skips, for `profile` run by `provider` (its own or the one rehearsed).
    A `gpu_workers: auto` profile is judged in its static layout; pass a laid-out one for a host."""
    from harness.layout import static

    profile = static(profile)
    out: dict[str, str] = {}
    gpu_tests = ("test_each_probe_sees_exactly_its_allocated_gpu", "test_two_pods_on_one_node_get_disjoint_gpus",
                 "test_pod_that_asked_for_no_gpu_sees_none", "test_host_gpus_equal_the_gpus_seen_in_the_cluster",
                 "test_gpu_servers_really_use_their_gpu")
    if profile.cluster.fake_gpus:  # the plugin's require_nvml
        for name in gpu_tests:
            out[name] = "fake GPUs: NVML sees nothing"
    else:
        if not _always(profile, lambda free, used: max(free, default=0) >= 1):
            out[gpu_tests[0]] = "a GPU node may have no free GPU beside the Servers"
        if not _always(profile, lambda free, used: max(free, default=0) >= 2):
            out[gpu_tests[1]] = "no GPU node is sure to keep two GPUs free beside the Servers"
        if provider != "kind":
            out[gpu_tests[3]] = "host NVML is compared with the cluster only on kind"
        if not any(s.gpu_use_expected for s in profile.servers):
            out[gpu_tests[4]] = "no GPU Server expects GPU use"
    if profile.gpu.taint.effect == "PreferNoSchedule":
        out["test_intruder_without_toleration_never_schedules_on_gpu_nodes"] = "PreferNoSchedule taint"
    if provider == "existing" and not profile.cluster.destructive:
        out["test_noexecute_taint_evicts_running_intruders"] = "destructive tests need cluster.destructive: true"
    elif not _always(profile, lambda free, used: len(used) < len(free)):
        out["test_noexecute_taint_evicts_running_intruders"] = "every GPU node may run a Server"
    if not profile.gpu_servers:
        out["test_gpu_server_with_requests_unequal_to_limits_is_refused"] = "no GPU Server"
        out["test_gpu_server_pods_run_on_the_gpu_pool"] = "no GPU Server"
    if not [s for s in profile.servers if not s.on_gpu]:
        out["test_cpu_servers_stay_off_gpu_nodes"] = "no CPU Server"
    if not [m for m in profile.models if profile.gpu.capability in m.requirements and profile.intended_server(m)]:
        out["test_requirement_based_model_lands_on_the_gpu_server"] = "no model requires the GPU capability"
    sizes = sorted(_memory_bytes(s.memory) for s in profile.servers)
    if not sizes or sizes[0] == sizes[-1] or int(sizes[0] * 1.1) + 1 >= sizes[-1] * 1.1:
        out["test_requirement_based_model_falls_back_to_a_server_that_fits"] = "Servers of one memory size"
    for model in profile.models:
        if not model.request_inputs:
            for protocol in ("http", "grpc"):
                out[f"test_one_inference_is_correct[{model.name}-{protocol}]"] = "no input"
        if not model.latency or not model.request_inputs:
            out[f"test_latency_meets_the_slo[{model.name}]"] = "no latency run"
        if profile.load.sweep is None or not model.latency or not model.request_inputs or not (
                slo_bound(profile, model.name)):
            out[f"test_capacity_at_slo[{model.name}]"] = "no capacity sweep (load.sweep) or no latency SLO"
    return out
