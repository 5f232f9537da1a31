"""The NVML probes run beside the deployed Servers: on a kind rehearsal whose only GPU worker is fully
held by a GPU Server, the host-versus-cluster test takes its diagnostic branch (a probe that asks for
no GPU and sees the node's GPUs) and still proves the host's GPUs equal those seen in the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_fully_held_gpu_node_is_seen_through_the_diagnostic_probe(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "profiles" / "kind-gpu.yaml").read_text(encoding="utf-8"))
    data["cluster"]["nodes"]["gpu_workers"] = [{"count": 1, "gpus": 1, "product": "NVIDIA-H200"}]
    data["servers"] = [s for s in data["servers"] if s["name"] == "triton-gpu"]
    data["models"] = [m for m in data["models"] if m["name"] == "mnist-onnx"]
    profile = tmp_path / "one-gpu.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/test_gpu_visibility.py", "-k", "host_gpus_equal", "--profile",
         str(profile), "--rehearse", "--report-dir", str(out), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    assert "1 of 1 GPU(s) held by Servers: a diagnostic probe" in text
    assert '"test_host_gpus_equal_the_gpus_seen_in_the_cluster"' in text
