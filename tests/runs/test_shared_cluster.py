"""Destructive tests on a cluster the harness did not create (issue 14 item 1): only when the
profile opts in, and only on a node where nothing of anyone else runs; otherwise skipped with the
reason, and nobody else's pod is evicted. A `sim up` process attached through its kubeconfig stands
in for the shared cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.checks.shared_nodes import destructive_refusal, nodes_free_of_others
from harness.config import load_profile, parse_profile
from harness.errors import UsageError
from harness.kube import Kube
from harness.safeyaml import load_one
from tests.kit.simproc import ROOT, existing_profile_for, running_sim

SIM_PROFILE = ROOT / "profiles" / "sim.yaml"
EVICT = "suites/test_isolation.py::test_noexecute_taint_evicts_running_intruders"
TAINT = {"key": "harness.seldon.dev/evict-test", "value": "true", "effect": "NoExecute"}


def _pod(name: str, ns: str, node: str, labels: dict[str, str] | None = None,
         tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"nodeName": node, "tolerations": tolerations or []}, "status": {"phase": "Running"}}


def test_free_nodes_are_those_where_the_taint_hits_only_this_runs_pods() -> None:
    pods = [
        _pod("mine", "seldon-mesh", "g1", {"harness.seldon.dev/run-id": "r1"}),
        _pod("probe", "r1-ns", "g1"),
        _pod("theirs", "team-b", "g2"),
        _pod("agent", "kube-system", "g3", tolerations=[{"operator": "Exists"}]),  # tolerates everything
        _pod("timed", "team-c", "g4", tolerations=[{**TAINT, "operator": "Equal", "tolerationSeconds": 5}]),
        {**_pod("done", "team-d", "g5"), "status": {"phase": "Succeeded"}},
    ]
    choice = nodes_free_of_others(["g1", "g2", "g3", "g4", "g5"], pods, "r1", TAINT, own_namespaces=["r1-ns"])
    assert choice.free == ["g1", "g3", "g5"]
    assert choice.busy == {"g2": "team-b/theirs", "g4": "team-c/timed"}


def test_destructive_needs_the_profile_opt_in_only_on_clusters_the_harness_did_not_create() -> None:
    assert destructive_refusal("sim", False) is None and destructive_refusal("kind", False) is None
    assert destructive_refusal("existing", True) is None
    assert "cluster.destructive: true" in (destructive_refusal("existing", False) or "")


def test_fake_gpus_on_an_existing_cluster_need_destructive() -> None:
    data = load_one((ROOT / "profiles" / "existing.yaml").read_text(), "profiles/existing.yaml")
    data["cluster"]["fake_gpus"] = True
    with pytest.raises(UsageError, match=r"cluster.fake_gpus: .*cluster.destructive: true"):
        parse_profile(data, "x.yaml")
    data["cluster"]["destructive"] = True
    assert parse_profile(data, "x.yaml").cluster.destructive


def _run_evict(profile: Path, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", EVICT, "--profile", str(profile), "--report-dir", str(report),
         "-q", "-rs", "-p", "no:cacheprovider", "--run-id", "shared"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )


@pytest.mark.slow
def test_eviction_test_never_evicts_other_peoples_pods(tmp_path: Path) -> None:
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        # Without the opt-in: skipped with the reason, no taint, nothing evicted.
        off = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "off.yaml")
        off.write_text(off.read_text().replace("destructive: true", "destructive: false"))
        assert load_profile(off).cluster.destructive is False
        proc = _run_evict(off, tmp_path / "r1")
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-3000:]
        assert "set cluster.destructive: true" in proc.stdout, proc.stdout[-3000:]

        # With the opt-in, but another team's pod runs on every GPU node: skipped, their pods stay.
        on = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "on.yaml")
        profile = load_profile(on)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
        taint = profile.gpu.taint
        pool = profile.gpu.pool_label
        gpu_nodes = [n["metadata"]["name"] for n in kube.list("v1", "Node")
                     if (n["metadata"].get("labels") or {}).get(pool.key) == pool.value]
        assert gpu_nodes
        for i, node in enumerate(gpu_nodes):
            kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"theirs-{i}", "namespace": "team-b"},
                         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
                                  "tolerations": [{"key": taint.key, "operator": "Equal", "value": taint.value,
                                                   "effect": taint.effect}]}})
        proc = _run_evict(on, tmp_path / "r2")
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-3000:]
        assert "would evict others' pods" in proc.stdout and "team-b/theirs-" in proc.stdout, proc.stdout[-3000:]
        left = {p["metadata"]["name"] for p in kube.list("v1", "Pod", "team-b")}
        assert left == {f"theirs-{i}" for i in range(len(gpu_nodes))}
        for node in kube.list("v1", "Node"):
            assert not any(t.get("key") == TAINT["key"] for t in (node.get("spec") or {}).get("taints") or [])
        kube.close()


def test_gpu_use_diagnostic_is_opt_in_on_existing_clusters() -> None:
    from harness.checks.shared_nodes import gpu_diagnostic_allowed, gpu_isolation_finding

    assert gpu_diagnostic_allowed("existing", None) is False
    assert gpu_diagnostic_allowed("existing", True) is True
    assert gpu_diagnostic_allowed("sim", None) is True and gpu_diagnostic_allowed("kind", False) is False
    finding = gpu_isolation_finding(["GPU-a", "GPU-b"], "n1", "existing")
    assert not finding.ok and "requested no GPU saw 2 GPU(s)" in finding.reason


@pytest.mark.slow
def test_gpu_use_diagnostic_off_by_default_and_an_isolation_finding_when_on(tmp_path: Path) -> None:
    test = "suites/test_gpu_visibility.py::test_gpu_servers_really_use_their_gpu"
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        # The check under test looks at GPU Servers that expect GPU use; one such Server (Triton's,
        # whose NVML view is the diagnostic) and its model are all it needs, and all this deploys.
        shipped = load_one(SIM_PROFILE.read_text(), str(SIM_PROFILE))
        servers = [{**next(s for s in shipped["servers"] if s.get("gpus", 1) > 0), "expect_gpu_use": True}]
        models = [m for m in shipped["models"] if "onnx" in m.get("requirements", [])]
        assert [s["server_config"] for s in servers] == ["triton"] and len(models) == 1
        off = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "off.yaml", servers=servers,
                                   models=models)
        proc = subprocess.run([sys.executable, "-m", "pytest", test, "--profile", str(off), "-q", "-rs",
                               "-p", "no:cacheprovider", "--report-dir", str(tmp_path / "r1")],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        # off: the check skips (NVML-only servers) or goes by Triton's own views, never the diagnostic
        report = (tmp_path / "r1" / "report.json").read_text()
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "set gpu.use_diagnostic: true" in proc.stdout + report, proc.stdout[-3000:]
        assert "requested no GPU saw" not in report
        data = load_one(off.read_text(), str(off))
        data["gpu"]["use_diagnostic"] = True
        on = tmp_path / "on.yaml"
        on.write_text(yaml.safe_dump(data))
        proc = subprocess.run([sys.executable, "-m", "pytest", test, "--profile", str(on), "-q",
                               "-p", "no:cacheprovider", "--report-dir", str(tmp_path / "r2")],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert "isolation: a pod on" in proc.stdout and "requested no GPU saw" in proc.stdout, proc.stdout[-3000:]
