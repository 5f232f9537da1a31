"""A run against a long-lived cluster (a `sim up` process, attached as an existing cluster) leaves
no namespace, pod, Seldon object, taint, label or capacity change behind, even when a test fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.checks.leftovers import differences
from harness.config import load_profile
from harness.kube import Kube
from harness.report import format_verdict, gate, load_report
from harness.testkit.helpers import capture_cluster_state
from tests.kit.simproc import ROOT, existing_profile_for, running_sim

SIM_PROFILE = ROOT / "profiles" / "sim.yaml"


def _plant_tenants(kube: Kube, profile: Any) -> dict[tuple[str, str], str]:
    """Another team on the shared cluster: a pod on a CPU worker, a GPU-tolerating pod on one GPU node
    (the eviction test must pick another one), and a Model of theirs in the Seldon namespace."""
    from harness.lifecycle import condition

    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant"}})
    pool, taint = profile.gpu.pool_label, profile.gpu.taint
    nodes = kube.list("v1", "Node")
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
    gpu = sorted(name for name, found in labels.items() if found.get(pool.key) == pool.value)
    cpu = sorted(n["metadata"]["name"] for n in nodes if n["metadata"]["name"] not in gpu
                 and not any(t.get("effect") == "NoSchedule" for t in (n.get("spec") or {}).get("taints") or []))
    toleration = {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}
    for name, node, tolerations in (("tenant-cpu", cpu[0], []), ("tenant-gpu", gpu[-1], [toleration])):
        kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "tenant"},
                     "spec": {"nodeName": node, "tolerations": tolerations,
                              "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    kube.create({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
                 "metadata": {"name": "tenant-model", "namespace": profile.seldon.namespace},
                 "spec": {"storageUri": "gs://tenant/model", "requirements": ["tenant-only"]}})
    uids = {}
    for name in ("tenant-cpu", "tenant-gpu"):
        pod = kube.wait_for("v1", "Pod", name, "tenant", lambda p: ((p or {}).get("status") or {}).get("phase")
                            == "Running", timeout=60, what=f"tenant pod {name} running")
        assert pod is not None
        uids[("tenant", name)] = pod["metadata"]["uid"]
    kube.wait_for("mlops.seldon.io/v1alpha1", "Model", "tenant-model", profile.seldon.namespace,
                  lambda m: condition(m, "ModelReady") is not None, timeout=60, what="the tenant Model's status")
    return uids


@pytest.mark.slow
def test_suites_leave_the_cluster_as_they_found_it(tmp_path: Path) -> None:
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        profile_path = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "existing.yaml")
        profile = load_profile(profile_path)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
        tenants = _plant_tenants(kube, profile)
        before = capture_cluster_state(kube, profile.seldon.namespace)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/test_isolation.py", "suites/test_placement.py",
             "--profile", str(profile_path), "--report-dir", str(tmp_path / "report"), "-q", "-p", "no:cacheprovider",
             "--run-id", "leftovers"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
        assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
        after = capture_cluster_state(kube, profile.seldon.namespace)
        assert differences(before, after) == [], proc.stdout[-3000:]
        # Issue 26: every tenant pod still runs, the same pod (uid), and the tenant's Model is untouched.
        for (ns, name), uid in tenants.items():
            pod = kube.get("v1", "Pod", name, ns)
            assert pod is not None and pod["metadata"]["uid"] == uid and pod["status"]["phase"] == "Running", name
        assert kube.get("mlops.seldon.io/v1alpha1", "Model", "tenant-model", profile.seldon.namespace) is not None
        assert sim.process.poll() is None, "the simulated cluster died during the run"
    # The existing provider reached `sim up` through a kubeconfig: the API said what it is, so the
    # report is simulated and the gate refuses it; even allowed, two suites out of five are partial.
    report = load_report(tmp_path / "report" / "report.json")
    assert report.provider == "existing" and report.simulated
    assert "harness-sim" in (report.cluster.simulated_reason or "")
    refused = format_verdict(gate(report, None, 0.10, allow_simulated=False), "r.json").splitlines()[0]
    assert refused.startswith("REFUSED: r.json is evidence from a SIMULATED CLUSTER"), refused
    partial = gate(report, None, 0.10, allow_simulated=True)
    assert any(f.kind == "partial" and "scheduling, gpu, latency did not run" in f.detail
               for f in partial.failures), partial.failures
