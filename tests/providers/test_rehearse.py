"""`--rehearse` and the reviewed skip allow-list.

Static (fast): every shipped profile keeps its shape when rehearsed; its predicted skips
(`harness.rehearse.expected_skips`) are exactly the allow-list's entries for it; every entry names a
shipped profile and a real test; the release workflow's gate reads that same file.
One real rehearsal (slow): profiles/kind-gpu.yaml on the simulated cluster skips exactly what the
allow-list declares for it, and the gate passes it only with --allow-simulated.
"""

from __future__ import annotations

import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from harness.config import Profile, load_profile
from harness.layout import is_auto, resolve, static
from harness.rehearse import expected_skips, host_gpus_from_nodes, rehearsal_profile, simulated_host_inventory
from harness.render.placement import runtime_class_name
from harness.report import gate, load_report
from harness.report.allowlist import load_allow_list
from harness.safeyaml import load_one

ROOT = Path(__file__).resolve().parents[2]
ALLOW_LIST = ROOT / "allowed-skips.yaml"
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
RELEASE = ROOT / ".github" / "workflows" / "release-gate.yml"
# The host sizes docs/real-clusters.md documents a gpu_workers: auto layout for.
LAYOUT_HOSTS = (1, 2, 4, 8)


def _suite_tests() -> set[str]:
    names: set[str] = set()
    for module in (ROOT / "suites").glob("test_*.py"):
        names |= set(re.findall(r"^def (test_\w+)\(", module.read_text(encoding="utf-8"), re.M))
    return names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_rehearsal_keeps_everything_but_the_provider(path: Path) -> None:
    profile = static(load_profile(path))  # gpu_workers: auto is laid out before a rehearsal
    rehearsed = rehearsal_profile(profile)
    assert rehearsed.cluster.provider == "sim" and rehearsed.simulated
    before, after = profile.model_dump(), rehearsed.model_dump()
    for key in ("provider", "kubeconfig", "context"):
        before["cluster"].pop(key)
        after["cluster"].pop(key)
    # What the real provider decides for `detect` is decided up front: kind with GPU passthrough names
    # `nvidia`, and the simulated cluster must then have that RuntimeClass, as the kind cluster does.
    expected_class = runtime_class_name(profile) if profile.cluster.provider == "kind" else None
    if expected_class is not None:
        assert (before["gpu"]["runtime_class"], after["gpu"]["runtime_class"]) == ("detect", expected_class)
        after["gpu"]["runtime_class"] = "detect"
    assert after == before


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_predicted_skips_are_exactly_the_allow_list(path: Path) -> None:
    profile = load_profile(path)
    allowed = {e.check for e in load_allow_list(ALLOW_LIST).for_profile(profile.name)}
    predicted = expected_skips(profile, profile.cluster.provider)
    if is_auto(profile):  # every documented host size: the allow-list covers the union of their skips
        for gpus in LAYOUT_HOSTS:
            predicted |= expected_skips(resolve(profile, gpus, "NVIDIA-H200", 143771, "test")[0], "kind")
    assert set(predicted) == allowed, (
        f"{path.name}: skips the profile's shape makes ({predicted}) differ from {ALLOW_LIST.name} ({allowed}): "
        "reshape the profile or review the allow-list")


def test_every_allow_list_entry_names_a_shipped_profile_and_a_real_test() -> None:
    names = {load_profile(p).name for p in PROFILES}
    tests = _suite_tests()
    for entry in load_allow_list(ALLOW_LIST).entries:
        assert any(fnmatchcase(n, entry.profile) for n in names), entry
        base = entry.check.split("[", 1)[0]
        assert any(fnmatchcase(t, base) for t in tests), entry
        assert len(entry.reason) > 20, entry
        # A pattern that matches any reason would allow the skip whatever caused it.
        assert not entry.allows_reason("") and not entry.allows_reason("no GPU node is free"), entry


def test_kind_gpu_is_shaped_to_run_every_shape_dependent_test() -> None:
    """On an 8-GPU host (and in render/lint's static layout), kind-gpu runs every shape-dependent test."""
    profile = static(load_profile(ROOT / "profiles" / "kind-gpu.yaml"))
    assert (profile.cluster.nodes.gpu_workers[0].count, profile.cluster.nodes.gpu_workers[0].gpus) == (4, 2)
    # What remains is the GPU-use check, until a Triton GPU Server joins the profile.
    assert set(expected_skips(profile, "kind")) <= {"test_gpu_servers_really_use_their_gpu"}


def test_a_small_profile_predicts_its_skips() -> None:
    data = load_profile(ROOT / "profiles" / "kind-gpu.yaml").model_dump(exclude={"source"})
    data["cluster"]["nodes"]["gpu_workers"] = [{"count": 2, "gpus": 1}]
    data["servers"] = [s for s in data["servers"] if s["name"] != "mlserver-gpu-sel"]
    data["models"] = [m for m in data["models"] if m["name"] != "iris-pinned"]
    for s in data["servers"]:
        s["memory"] = "2Gi"
    profile = Profile.model_validate(data)
    # The Triton GPU Server expects GPU use, so the GPU-use check runs.
    assert set(expected_skips(profile, "kind")) == {
        "test_two_pods_on_one_node_get_disjoint_gpus",
        "test_requirement_based_model_falls_back_to_a_server_that_fits"}
    data["servers"] = [{**s, "expect_gpu_use": False} for s in data["servers"]]
    assert "test_gpu_servers_really_use_their_gpu" in expected_skips(Profile.model_validate(data), "kind")
    data["servers"] = [{**s, "expect_gpu_use": None} for s in data["servers"]]
    data["cluster"]["nodes"]["gpu_workers"] = [{"count": 1, "gpus": 1}]
    one = Profile.model_validate(data)
    assert {"test_each_probe_sees_exactly_its_allocated_gpu", "test_noexecute_taint_evicts_running_intruders",
            "test_host_gpus_equal_the_gpus_seen_in_the_cluster"} <= set(expected_skips(one, "existing"))


def test_release_gate_reads_the_allow_list() -> None:
    data = load_one(RELEASE.read_text(encoding="utf-8"), str(RELEASE))
    (job,) = data["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("name") == "Release gate"]
    assert "--allow-list allowed-skips.yaml" in step["run"]
    assert "--allow-skip" not in step["run"] and "--allow-simulated" not in step["run"]


def test_simulated_host_lists_every_gpu_of_the_gpu_workers(tmp_path: Path) -> None:
    nodes = [
        {"metadata": {"name": "w2", "annotations": {"sim.harness.dev/gpu-uuids": "GPU-c,GPU-d"},
                      "labels": {"nvidia.com/gpu.product": "NVIDIA-H200-NVL", "nvidia.com/gpu.memory": "143771"}}},
        {"metadata": {"name": "w1", "annotations": {"sim.harness.dev/gpu-uuids": "GPU-a,GPU-b"}}},
        {"metadata": {"name": "cpu"}},
    ]
    assert [g["uuid"] for g in host_gpus_from_nodes(nodes)] == ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]
    result, reason = simulated_host_inventory(nodes, tmp_path)
    assert result is not None and sorted(result.visible_uuids) == ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]
    assert reason.startswith("simulated host (--rehearse): host NVML sees 4 GPU(s)")
    assert simulated_host_inventory([{"metadata": {"name": "cpu"}}], tmp_path)[0] is None


def _slo_miss(kind: str, subject: str, detail: str) -> bool:
    """A gate failure that only says the machine was too slow for the profile's SLOs."""
    if kind in ("slo", "inconclusive"):  # an overloaded load client is the busy machine too
        return True
    latency = subject.startswith("latency: test_latency_meets") and "> SLO" in detail
    capacity = subject.startswith("latency: test_capacity_at_slo") and "no offered rate meets the SLO" in detail
    return kind == "check" and (latency or capacity)


def test_only_slo_misses_are_tolerated_in_the_rehearsal() -> None:
    assert _slo_miss("check", "latency: test_capacity_at_slo[iris-cpu]",
                     "fail: AssertionError: iris-cpu: no offered rate meets the SLO (ramp); steps: 100.0/s: p99 "
                     "130.2 ms > SLO 100 ms")
    assert _slo_miss("check", "latency: test_latency_meets_the_slo[iris-cpu]", "p99 130 ms > SLO 100 ms")
    assert not _slo_miss("check", "latency: test_capacity_at_slo[iris-cpu]",
                         "fail: AssertionError: iris-cpu: capacity sweep incomplete: server gone")
    assert not _slo_miss("check", "placement: test_gpu_servers_only_on_gpu_nodes", "no offered rate meets the SLO")


@pytest.mark.slow
def test_kind_gpu_rehearsal_skips_exactly_the_allow_list(tmp_path: Path) -> None:
    """The real thing, once: every suite of the shipped kind-gpu profile on the simulated cluster.

    Only the load's length is cut (CI time: the profile measures 30 s per model and sweeps 60 s; here
    1.5 s and 4 s); the rate, the SLOs
    and everything else are the shipped profile's. Those SLOs are written for a GPU runner: on a
    busy shared CI machine the local MLServer may miss them, so a latency SLO miss is the one
    failure this test tolerates (and names): a latency check over its SLO, or a capacity sweep
    none of whose steps met it (with five test workers on two cores, iris-cpu's p99 at the first
    100 req/s step has been seen above the 100 ms SLO); anything else fails it.
    """
    data = load_one((ROOT / "profiles" / "kind-gpu.yaml").read_text(encoding="utf-8"), "profiles/kind-gpu.yaml")
    assert data["cluster"]["nodes"]["gpu_workers"] == "auto"
    data["load"].update(duration_s=1.5, warmup_s=0.5, window_s=1, max_trials=1)
    data["load"]["sweep"].update(budget_s=4, step_s=1, warmup_s=0.3, min_requests=0)
    profile_path = tmp_path / "kind-gpu.yaml"
    profile_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    out = tmp_path / "report"
    proc = subprocess.run(
        # One layout here (the smallest host: one GPU, the most skips, a Server left out); the 8-GPU host
        # runs by hand: `make e2e PROFILE=profiles/kind-gpu.yaml PYTEST_ARGS="--rehearse --rehearse-host-gpus=8"`.
        [sys.executable, "-m", "pytest", "suites/", "--profile", str(profile_path), "--rehearse",
         "--rehearse-host-gpus", "1", "--report-dir", str(out), "-q", "-p", "no:cacheprovider", "--run-id", "rehearse"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert (out / "report.json").is_file(), proc.stdout[-4000:] + proc.stderr[-2000:]
    report = load_report(out / "report.json")
    assert report.simulated and report.provider == "sim" and report.profile.name == "kind-gpu"
    assert report.rehearsal is not None and report.rehearsal.provider == "kind"
    assert report.rehearsal.host_gpus_simulated
    assert report.gpu_layout is not None
    assert (report.gpu_layout.host_gpus, report.gpu_layout.workers, report.gpu_layout.gpus_per_worker) == (1, 1, 1)
    assert report.gpu_layout.left_out_servers == ["mlserver-gpu-sel"]
    assert report.gpu_layout.left_out_models == ["iris-pinned"]
    skipped = {c.name: c.reason for c in report.checks if c.status == "skip"}
    allow = load_allow_list(ALLOW_LIST)
    assert set(skipped) <= {e.check for e in allow.for_profile("kind-gpu")}
    assert all(allow.allowing("kind-gpu", name, reason) for name, reason in skipped.items()), skipped
    one_gpu = resolve(load_profile(ROOT / "profiles" / "kind-gpu.yaml"), 1, "NVIDIA-H200", 143771, "test")[0]
    predicted = set(expected_skips(one_gpu, "kind"))
    # The probe test skips only when it runs after the GPU Servers took the GPU ("may"): in suite order it
    # runs before the deployment, so it may run; the shapes a one-GPU host lacks always skip.
    assert {"test_two_pods_on_one_node_get_disjoint_gpus", "test_noexecute_taint_evicts_running_intruders"} \
        <= set(skipped) <= predicted
    # Each skip names the shape the one-GPU host lacks (what the reason-aware allow-list matches).
    assert all("missing shape: " in reason for reason in skipped.values()), skipped
    host = [c for c in report.checks if c.name == "test_host_gpus_equal_the_gpus_seen_in_the_cluster"]
    assert [c.status for c in host] == ["pass"]
    assert gate(report, None, 0.10, allow_simulated=False, allow_list=allow).refused
    verdict = gate(report, None, 0.10, allow_simulated=True, allow_list=allow)
    not_slo = [f for f in verdict.failures if not _slo_miss(f.kind, f.subject, f.detail)]
    assert not not_slo, not_slo
    if verdict.failures:
        print(f"latency SLO misses on this machine (load {Path('/proc/loadavg').read_text().split()[0]}): "
              f"{[f.detail for f in verdict.failures][:3]}")
    else:
        assert verdict.passed and proc.returncode == 0
