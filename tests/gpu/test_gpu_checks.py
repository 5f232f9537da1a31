"""Every GPU visibility verdict, passing and failing, with the failure reason asserted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.gpu import run_probe_simulated
from harness.gpu.checks import (
    Verdict,
    check_disjoint,
    check_gpu_in_use,
    check_host_matches_cluster,
    check_pod_visibility,
    failed,
    gfd_product_label,
    product_matches,
)
from harness.gpu.host import host_inventory, host_inventory_with_reason
from harness.gpu.result import ProbeResult, allocated_uuids_from_env, parse_probe_output, probe_result_from_dict
from harness.gpu.simnvml import build_library, load_simulated_bindings, prepare_driver_dir

A, B, C = "GPU-aaaa", "GPU-bbbb", "GPU-cccc"
MIG = "MIG-1111"


def device(
    uuid: str, name: str = "NVIDIA H200", *, procs: list[tuple[int, int | None]] | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "index": 0,
        "name": name,
        "uuid": uuid,
        "memory_total_bytes": 100,
        "memory_used_bytes": kw.pop("used", 0),
        "memory_free_bytes": 100,
        "mig_mode": kw.pop("mig_mode", None),
        "mig_devices": kw.pop("mig_devices", []),
        "compute_processes": None if procs is None else [{"pid": p, "used_memory_bytes": m} for p, m in procs],
        "utilization": None,
    }


def result(
    devices: list[dict[str, Any]],
    *,
    visible: str | None = None,
    available: bool = True,
    errors: list[dict[str, str]] | None = None,
    source: str = "probe-1",
) -> ProbeResult:
    doc = {
        "schema_version": 1,
        "env": {"NVIDIA_VISIBLE_DEVICES": visible, "nvidia_container_devices": None},
        "nvml_available": available,
        "driver_version": "550.54.15" if available else None,
        "device_count": len(devices) if available else None,
        "devices": devices,
        "errors": errors or [],
    }
    return probe_result_from_dict(doc, source)


NO_DRIVER = [{"call": "nvmlInit", "error": "NVMLError_LibraryNotFound", "message": "NVML Shared Library Not Found"}]


def by_id(verdicts: list[Verdict]) -> dict[str, Verdict]:
    ids = [v.id for v in verdicts]
    assert len(ids) == len(set(ids)), ids
    return {v.id: v for v in verdicts}


# ---- product label ----


@pytest.mark.parametrize(
    ("name", "parts", "label"),
    [
        ("NVIDIA H200", (), "NVIDIA-H200"),
        ("NVIDIA A100-SXM4-40GB", ("MIG", "1g.5gb"), "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
        ("Tesla T4", (), "Tesla-T4"),
        ("NVIDIA GeForce RTX 4090", (), "NVIDIA-GeForce-RTX-4090"),
    ],
)
def test_gfd_label_form(name: str, parts: tuple[str, ...], label: str) -> None:
    assert gfd_product_label(name, *parts) == label


def test_product_matches_plain_shared_and_mig_forms() -> None:
    assert product_matches("NVIDIA H200", "NVIDIA-H200")
    assert product_matches("NVIDIA H200", "NVIDIA-H200-SHARED")
    assert product_matches("NVIDIA A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
    assert not product_matches("NVIDIA H200", "NVIDIA-H100-80GB-HBM3")
    assert not product_matches("NVIDIA H200", "NVIDIA H200")  # a label never holds spaces
    assert not product_matches("NVIDIA H20", "NVIDIA-H200")


# ---- pod visibility ----


def test_gpu_pod_all_good() -> None:
    r = result([device(A)], visible=A)
    verdicts = check_pod_visibility(r, 1, {A, B}, "NVIDIA-H200", {A}, node="gpu-worker")
    got = by_id(verdicts)
    assert set(got) == {"gpu.nvml", "gpu.probe-errors", "gpu.count", "gpu.allocation", "gpu.node-subset", "gpu.product"}
    assert failed(verdicts) == []
    assert "pod probe-1 on node gpu-worker" in got["gpu.count"].reason


def test_unknown_facts_emit_no_verdict() -> None:
    got = by_id(check_pod_visibility(result([device(A)]), 1, None, None, None))
    assert set(got) == {"gpu.nvml", "gpu.probe-errors", "gpu.count"}


def test_count_mismatch() -> None:
    r = result([device(A), device(B)], visible="all")
    v = by_id(check_pod_visibility(r, 1, None, None, None, node="n1"))["gpu.count"]
    assert not v.ok
    assert v.reason == (
        "pod probe-1 on node n1 requested 1 GPU(s) and sees 2: {GPU-aaaa, GPU-bbbb} "
        "(NVIDIA_VISIBLE_DEVICES='all', /var/run/nvidia-container-devices absent)"
    )


def test_allocation_mismatch_names_missing_and_unexpected() -> None:
    v = by_id(check_pod_visibility(result([device(B)]), 1, None, None, {A}, node="n1"))["gpu.allocation"]
    assert not v.ok
    assert (
        v.reason
        == "pod probe-1 on node n1 sees {GPU-bbbb}, allocated {GPU-aaaa}; missing {GPU-aaaa}, unexpected {GPU-bbbb}"
    )


def test_gpu_not_on_node() -> None:
    v = by_id(check_pod_visibility(result([device(C)]), 1, {A, B}, None, None, node="n1"))["gpu.node-subset"]
    assert not v.ok
    assert "node GPUs {GPU-aaaa, GPU-bbbb}" in v.reason and "not on the node: {GPU-cccc}" in v.reason


def test_mig_device_belongs_to_node_through_its_parent() -> None:
    mig_dev = device(A, "NVIDIA A100-SXM4-40GB", mig_mode={"current": 1, "pending": 1})
    mig_dev["mig_devices"] = [{"slot": 0, "uuid": MIG, "name": "x", "memory_total_bytes": 5}]
    r = result([mig_dev], visible=MIG)
    verdicts = by_id(check_pod_visibility(r, 1, {A}, "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", {MIG}))
    assert all(v.ok for v in verdicts.values()), failed(verdicts.values())
    assert "{MIG-1111}" in verdicts["gpu.count"].reason


def test_product_mismatch() -> None:
    v = by_id(check_pod_visibility(result([device(A)]), 1, None, "NVIDIA-H100-80GB-HBM3", None, node="n1"))[
        "gpu.product"
    ]
    assert not v.ok
    assert "NVML names ['NVIDIA H200'] (label form NVIDIA-H200)" in v.reason
    assert "nvidia.com/gpu.product='NVIDIA-H100-80GB-HBM3'" in v.reason and "mismatch" in v.reason


def test_gpu_pod_without_nvml_fails_and_says_why() -> None:
    r = result([], available=False, errors=NO_DRIVER, visible=None)
    verdicts = check_pod_visibility(r, 2, {A, B}, "NVIDIA-H200", None, node="n1")
    assert [v.id for v in verdicts] == ["gpu.nvml"]
    assert not verdicts[0].ok
    assert "requested 2 GPU(s) but NVML is unavailable (nvmlInit: NVMLError_LibraryNotFound" in verdicts[0].reason
    assert "NVIDIA_VISIBLE_DEVICES=None" in verdicts[0].reason


def test_probe_errors_fail() -> None:
    errors = [{"call": "nvmlDeviceGetName(0)", "error": "NVMLError_GpuIsLost", "message": "GPU is lost"}]
    v = by_id(check_pod_visibility(result([device(A)], errors=errors), 1, None, None, None))["gpu.probe-errors"]
    assert not v.ok
    assert v.reason.endswith("probe errors: nvmlDeviceGetName(0): NVMLError_GpuIsLost: GPU is lost")


def test_pod_without_request_and_without_driver_passes() -> None:
    r = result([], available=False, errors=NO_DRIVER)
    verdicts = by_id(check_pod_visibility(r, 0, {A}, "NVIDIA-H200", None, node="n1"))
    assert set(verdicts) == {"gpu.probe-errors", "gpu.no-gpu-without-request"}
    assert all(v.ok for v in verdicts.values())


def test_pod_without_request_with_driver_and_none_passes() -> None:
    verdicts = by_id(check_pod_visibility(result([], visible="none"), 0, {A}, None, None))
    assert verdicts["gpu.no-gpu-without-request"].ok


def test_leaked_visible_devices_all_is_caught() -> None:
    r = result([device(A), device(B)], visible="all", source="intruder")
    v = by_id(check_pod_visibility(r, 0, {A, B}, "NVIDIA-H200", None, node="gpu-1"))["gpu.no-gpu-without-request"]
    assert not v.ok
    assert v.reason.startswith("pod intruder on node gpu-1 requested no GPU but sees 2: {GPU-aaaa, GPU-bbbb}")
    assert "NVIDIA_VISIBLE_DEVICES='all'" in v.reason


# ---- disjoint ----


def test_disjoint_pass() -> None:
    (v,) = check_disjoint({"p1": result([device(A)]), "p2": result([device(B)])}, node="n1")
    assert v.ok and v.reason == "pods on node n1: p1: {GPU-aaaa}; p2: {GPU-bbbb}"


def test_disjoint_fail_names_pairs() -> None:
    (v,) = check_disjoint(
        {"p1": result([device(A), device(B)]), "p2": result([device(B)]), "p3": result([device(C)])}, node="n1"
    )
    assert not v.ok
    assert v.reason.endswith("overlap: p1 and p2 share {GPU-bbbb}")


def test_disjoint_is_never_vacuous() -> None:
    (v,) = check_disjoint({}, node="n1")
    assert not v.ok and "0 pod(s): disjointness needs two" in v.reason
    (v,) = check_disjoint({"p1": result([device(A)])}, node="n1")
    assert not v.ok and "1 pod(s)" in v.reason
    (v,) = check_disjoint({"p1": result([device(A)]), "p2": result([], available=False)}, node="n1")
    assert not v.ok and v.reason.endswith("no GPU seen by p2")
    (v,) = check_disjoint({"p1": result([]), "p2": result([])}, node="n1")
    assert not v.ok and "no GPU seen by p1, p2" in v.reason


# ---- in use ----


def test_in_use_by_a_compute_process() -> None:
    (v,) = check_gpu_in_use(result([device(A, procs=[(42, 2048)]), device(B)]), {A}, node="n1")
    assert v.ok and "pid 42 uses 2048 B on GPU-aaaa" in v.reason


def test_not_in_use_when_only_another_gpu_is_busy() -> None:
    (v,) = check_gpu_in_use(result([device(A, procs=[]), device(B, procs=[(7, 99)])]), {A}, node="n1")
    assert not v.ok
    assert (
        v.reason
        == "pod probe-1 on node n1: no compute process uses {GPU-aaaa} (GPU-aaaa: 0 process(es), memory used 0 B)"
    )


def test_in_use_process_with_unknown_memory_is_not_evidence() -> None:
    (v,) = check_gpu_in_use(result([device(A, procs=[(3, None)])]), {A})
    assert not v.ok


def test_in_use_device_memory_fallback() -> None:
    r = result([device(A, procs=[], used=600)])
    assert not check_gpu_in_use(r, {A})[0].ok
    (v,) = check_gpu_in_use(r, {A}, min_device_memory_bytes=512)
    assert v.ok and "GPU-aaaa has 600 B used (>= 512)" in v.reason
    assert not check_gpu_in_use(r, {A}, min_device_memory_bytes=1024)[0].ok


def test_in_use_cannot_see_the_gpu() -> None:
    (v,) = check_gpu_in_use(result([device(B, procs=[(1, 5)])]), {A}, node="n1")
    assert not v.ok and "cannot see the server's GPUs {GPU-aaaa}; sees {GPU-bbbb}" in v.reason


def test_in_use_without_nvml() -> None:
    (v,) = check_gpu_in_use(result([], available=False, errors=NO_DRIVER), {A})
    assert not v.ok and "NVML unavailable" in v.reason


def test_in_use_by_a_process_listed_on_the_mig_device() -> None:
    mig_dev = device(A, mig_mode={"current": 1, "pending": 1}, procs=[])
    mig_dev["mig_devices"] = [
        {
            "slot": 0,
            "uuid": MIG,
            "name": "x",
            "memory_total_bytes": 5,
            "compute_processes": [{"pid": 8, "used_memory_bytes": 4}],
        }
    ]
    (v,) = check_gpu_in_use(result([mig_dev]), {MIG})
    assert v.ok and v.reason.endswith("pid 8 uses 4 B on MIG-1111")
    mig_dev["mig_devices"][0]["compute_processes"] = []
    assert not check_gpu_in_use(result([mig_dev]), {MIG})[0].ok


def test_in_use_device_memory_fallback_on_a_mig_slice() -> None:
    mig_dev = device(A, mig_mode={"current": 1, "pending": 1})
    mig_dev["memory_used_bytes"] = None
    mig_dev["mig_devices"] = [{"slot": 0, "uuid": MIG, "name": "x", "memory_total_bytes": 5, "memory_used_bytes": 700}]
    (v,) = check_gpu_in_use(result([mig_dev]), {MIG}, min_device_memory_bytes=512)
    assert v.ok and v.reason.endswith("MIG-1111 has 700 B used (>= 512)")


def test_in_use_on_mig_device() -> None:
    mig_dev = device(A, mig_mode={"current": 1, "pending": 1}, procs=[(9, 10)])
    mig_dev["mig_devices"] = [{"slot": 0, "uuid": MIG, "name": "x", "memory_total_bytes": 5}]
    assert check_gpu_in_use(result([mig_dev]), {MIG})[0].ok


# ---- host vs cluster ----


def test_host_matches_cluster() -> None:
    (v,) = check_host_matches_cluster({A, B}, {B, A})
    assert v.ok and v.reason == "host NVML {GPU-aaaa, GPU-bbbb}, cluster {GPU-aaaa, GPU-bbbb}"


def test_host_differs_from_cluster() -> None:
    (v,) = check_host_matches_cluster({A, B}, {B, C})
    assert not v.ok
    assert v.reason.endswith("only on host {GPU-aaaa}, only in cluster {GPU-cccc}")


@pytest.mark.parametrize("subset", [False, True])
def test_host_matches_cluster_is_never_vacuous(subset: bool) -> None:
    (v,) = check_host_matches_cluster(set(), set(), allow_unused_host_gpus=subset)
    assert not v.ok and "host NVML sees no GPU" in v.reason and "no GPU was seen in the cluster" in v.reason
    (v,) = check_host_matches_cluster({A}, set(), allow_unused_host_gpus=subset)
    assert not v.ok and "no GPU was seen in the cluster" in v.reason
    (v,) = check_host_matches_cluster({A, B}, {A, B}, allow_unused_host_gpus=subset, unavailable=["ns/host-1 on n2"])
    assert not v.ok and "NVML unavailable in ns/host-1 on n2" in v.reason


def test_host_subset_allowed_when_profile_hands_out_some_gpus() -> None:
    assert check_host_matches_cluster({A, B}, {B}, allow_unused_host_gpus=True)[0].ok
    assert not check_host_matches_cluster({A, B}, {B})[0].ok
    assert not check_host_matches_cluster({A}, {A, C}, allow_unused_host_gpus=True)[0].ok


# ---- host inventory (through the simulated NVML in-process) ----


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(tmp_path_factory.getbasetemp() / "simnvml-cache")


def test_host_inventory_with_driver(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = prepare_driver_dir(tmp_path, library, [{"uuid": A, "name": "NVIDIA H200", "memory_total_bytes": 1}])
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    inv, reason = host_inventory_with_reason(load_simulated_bindings(driver))
    assert inv is not None and inv.source == "host"
    assert inv.visible_uuids == {A}
    assert reason == f"host NVML sees 1 GPU(s): {A}"


def test_host_inventory_without_driver() -> None:
    nvml = load_simulated_bindings(None)
    assert host_inventory(nvml) is None
    _, reason = host_inventory_with_reason(nvml)
    assert reason.startswith(
        "host NVML unavailable (no NVIDIA driver on this host?): nvmlInit: NVMLError_LibraryNotFound"
    )


def test_host_inventory_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.gpu.host as host

    monkeypatch.setattr(host, "_import_nvml", lambda: None)
    inv, reason = host.host_inventory_with_reason()
    assert inv is None and "pip install --force-reinstall 'nvidia-ml-py==" in reason


# ---- the whole chain: real probe script under the simulated NVML -> parser -> verdicts ----


@pytest.fixture
def probe_pod(library: Path, tmp_path: Path) -> Callable[[str | None, list[dict[str, Any]] | None], ProbeResult]:
    def run(visible: str | None, node_gpus: list[dict[str, Any]] | None) -> ProbeResult:
        proc = run_probe_simulated(tmp_path / "pod", library, node_gpus, visible)
        assert proc.returncode == 0, proc.stderr
        return parse_probe_output(proc.stdout, "ns/probe")

    return run


ProbePod = Callable[[str | None, list[dict[str, Any]] | None], ProbeResult]


NODE_GPUS = [
    {"uuid": A, "name": "NVIDIA H200", "memory_total_bytes": 1},
    {"uuid": B, "name": "NVIDIA H200", "memory_total_bytes": 1},
]


def test_chain_allocated_gpu_pod_passes(probe_pod: ProbePod) -> None:
    r = probe_pod(B, NODE_GPUS)
    verdicts = check_pod_visibility(r, 1, {A, B}, "NVIDIA-H200", allocated_uuids_from_env(r.env), node="gpu-1")
    assert failed(verdicts) == [] and {v.id for v in verdicts} >= {"gpu.allocation", "gpu.product"}


def test_chain_catches_visible_devices_all_leak(probe_pod: ProbePod) -> None:
    r = probe_pod("all", NODE_GPUS)
    bad = failed(check_pod_visibility(r, 0, {A, B}, "NVIDIA-H200", None, node="gpu-1"))
    assert [v.id for v in bad] == ["gpu.no-gpu-without-request"]
    assert "sees 2: {GPU-aaaa, GPU-bbbb}" in bad[0].reason


def test_chain_pod_on_cpu_node_asking_for_gpu_fails(probe_pod: ProbePod) -> None:
    r = probe_pod(A, None)
    (v,) = check_pod_visibility(r, 1, None, None, None, node="cpu-1")
    assert v.id == "gpu.nvml" and not v.ok and "NVMLError_LibraryNotFound" in v.reason


def test_host_inventory_through_the_real_bindings() -> None:
    pytest.importorskip("pynvml", reason="install nvidia-ml-py to read host GPUs")
    inv, reason = host_inventory_with_reason()
    if inv is None:
        assert reason.startswith("host NVML unavailable")
    else:
        assert inv.nvml_available and reason.startswith("host NVML sees")
        assert all(u.startswith(("GPU-", "MIG-")) for u in inv.visible_uuids)
