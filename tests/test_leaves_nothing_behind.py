"""A run against a long-lived cluster (a `sim up` process, attached as an existing cluster) leaves
no namespace, pod, Seldon object, taint, label or capacity change behind, even when a test fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.checks.leftovers import differences
from harness.config import load_profile
from harness.kube import Kube
from harness.report import format_verdict, gate, load_report
from harness.testing import capture_cluster_state
from tests.simproc import ROOT, existing_profile_for, running_sim

SIM_PROFILE = ROOT / "profiles" / "sim.yaml"


@pytest.mark.slow
def test_suites_leave_the_cluster_as_they_found_it(tmp_path: Path) -> None:
    with running_sim(SIM_PROFILE, tmp_path) as sim:
        profile_path = existing_profile_for(SIM_PROFILE, sim.kubeconfig, tmp_path / "existing.yaml")
        profile = load_profile(profile_path)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
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
