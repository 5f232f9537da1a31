"""Deliberately broken profiles make the right suite fail, and the failure names the cause.

Each case runs the real suites in a subprocess (`pytest suites/...`) against the simulated cluster,
as a user would, with one mistake from the seed document or the field reports (design B1).
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "negative",
    "cluster": {"provider": "sim", "name": "neg", "nodes": {
        "cpu_workers": {"count": 1},
        "gpu_workers": [{"count": 1, "gpus": 2, "product": "NVIDIA-H200"}],
    }},
    "servers": [
        {"name": "mlserver-gpu", "gpus": 1, "placement": "nodeAffinity"},
        {"name": "mlserver-cpu", "gpus": 0, "extra_capabilities": ["model-on-cpu"]},
    ],
    "models": [{
        "name": "iris-gpu", "storage_uri": "gs://seldon-models/scv2/samples/mlserver_1.6.0/iris-sklearn",
        "requirements": ["sklearn", "model-on-gpu"],
    }],
    # Short budgets: each case fails by one of them (an Unschedulable pod gives up after pod_schedule_s,
    # a pod the API refuses after server_ready_s); the healthy CPU Server is Ready in about a second.
    "timeouts": {"server_ready_s": 10, "model_ready_s": 90, "pod_schedule_s": 5, "probe_s": 30},
}

GPU_CONTAINER = {"name": "mlserver"}


def _broken(case: str) -> dict[str, Any]:
    profile = copy.deepcopy(BASE)
    gpu_server = profile["servers"][0]
    if case == "toleration_removed":
        gpu_server["pod_spec"] = {"tolerations": []}
    elif case == "wrong_effect":
        gpu_server["pod_spec"] = {"tolerations": [
            {"key": "seldon-gpu-srv", "operator": "Equal", "value": "true", "effect": "NoExecute"}]}
    elif case == "affinity_to_missing_label":
        gpu_server["pod_spec"] = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "pool", "operator": "In", "values": ["no-such-pool"]}]}]}}}}
    elif case == "requests_not_limits":
        gpu_server["pod_spec"] = {"containers": [{**GPU_CONTAINER, "resources": {
            "requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}}]}
    elif case == "model_requirement_missing":
        profile["models"][0]["requirements"] = ["sklearn"]
        profile["models"][0]["expect_server"] = "mlserver-gpu"
        profile["servers"][1]["extra_capabilities"] = []
    elif case == "triton_gpu_removed":
        # The Triton GPU Server loses its GPU but is still expected to use one: the model loads on the
        # CPU (tfsimple has no instance_group), and the GPU-use check fails showing all three views.
        profile["servers"][0] = {"name": "triton-gpu", "server_config": "triton", "gpus": 0,
                                 "expect_gpu_use": True, "extra_capabilities": ["model-on-gpu"]}
        tensor = {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": list(range(16))}
        profile["models"] = [{"name": "tfsimple", "storage_uri": "gs://seldon-models/triton/simple",
                              "requirements": ["tensorflow", "model-on-gpu"],
                              "inputs": [tensor, {**tensor, "name": "INPUT1"}]}]
    elif case == "mig_second_slice":
        # The GPUs carry two MIG devices each, but the device plugin runs with migStrategy none (a config
        # that does not match the GPUs): it hands out the whole MIG-enabled GPU, and a pod that asked for
        # one device sees both slices.
        profile["cluster"]["nodes"]["gpu_workers"][0]["product"] = "NVIDIA-A100-SXM4-40GB"
        profile["gpu"] = {"sharing": {"mig": {"strategy": "single", "profiles": ["1g.5gb", "1g.5gb"]}},
                          "device_plugin": {"mig_strategy": "none"}}
    elif case == "timeslice_capacity":
        # The profile says 4 replicas per GPU, the plugin's config says 2: capacity 2 x 2, not 2 x 4.
        profile["gpu"] = {"sharing": {"time_slicing": {"replicas": 4}}, "device_plugin": {"replicas": 2}}
    else:
        raise AssertionError(case)
    return profile


CASES = {
    # case: (suite to run, texts of which the failure output must contain at least one)
    # "toleration_removed" runs once, in test_unschedulable_gpu_server_fails_fast_whatever_server_ready_s_is,
    # which asserts the same failure and names the same taint with a 10-minute server_ready_s.
    "wrong_effect": ("suites/test_placement.py", ["untolerated taint {seldon-gpu-srv: true}"]),
    "affinity_to_missing_label": ("suites/test_placement.py", ["didn't match Pod's node affinity/selector"]),
    # The API refuses the StatefulSet, so no pod ever exists: the wait gives up on the operator's refusal
    # after pod_schedule_s instead of waiting out server_ready_s.
    "requests_not_limits": ("suites/test_placement.py", [
        "cannot make the Server's StatefulSet: StatefulSet.apps \"mlserver-gpu\" is invalid: "]),
    # Seldon may put the model on either server that offers sklearn: both outcomes are named.
    "triton_gpu_removed": ("suites/test_gpu_visibility.py::test_gpu_servers_really_use_their_gpu", [
        "[config: instance groups [('KIND_CPU', [])]] [nvml: not taken"]),
    # Shared GPUs (docs/gpu-sharing.md); the third negative case, a Server asking for a MIG profile no node
    # offers, is refused with one line before anything runs (tests/gpu/test_gpu_sharing.py).
    "mig_second_slice": ("suites/test_gpu_visibility.py::test_each_probe_sees_exactly_its_allocated_gpu", [
        "requested 1 GPU(s) and sees 2: {MIG-"]),
    "timeslice_capacity": ("suites/test_gpu_visibility.py::test_each_probe_sees_exactly_its_allocated_gpu", [
        "node neg-gpu-worker advertises 4 nvidia.com/gpu, expected 8 (nvidia.com/gpu.count 2 x 4 replica(s)"]),
    "model_requirement_missing": ("suites/test_placement.py", [
        "model/seldon-mesh/iris-gpu: landed on server=mlserver-cpu, expected server=mlserver-gpu",
        "landed on GPU server mlserver-gpu without requiring 'model-on-gpu'"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_profile_fails_the_right_suite_naming_the_cause(tmp_path: Path, case: str) -> None:
    suite, expected = CASES[case]
    profile = tmp_path / f"{case}.yaml"
    profile.write_text(yaml.safe_dump(_broken(case), sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", suite, "--profile", str(profile), "--report-dir", str(tmp_path / "r"),
         "-q", "-p", "no:cacheprovider", "-x", "--run-id", "neg"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"expected the suite to fail (exit 1), got {proc.returncode}:\n{output[-3000:]}"
    assert any(text in output for text in expected), (
        f"{case}: expected one of {expected} in the failure output:\n{output[-4000:]}"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unschedulable_gpu_server_fails_fast_whatever_server_ready_s_is(tmp_path: Path) -> None:
    """The GPU Server without its toleration: the deployment gives up once its pod has been Unschedulable
    for `pod_schedule_s`, naming the taint, instead of waiting out a 10-minute `server_ready_s`."""
    broken = _broken("toleration_removed")
    broken["timeouts"] = {**broken["timeouts"], "server_ready_s": 600, "model_ready_s": 600}
    profile = tmp_path / "slow-budget.yaml"
    profile.write_text(yaml.safe_dump(broken, sort_keys=False))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/test_placement.py", "--profile", str(profile), "--report-dir",
         str(tmp_path / "r"), "-q", "-p", "no:cacheprovider", "-x", "--run-id", "neg"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "gave up after" in output and "unschedulable for" in output, output[-4000:]
    assert "untolerated taint {seldon-gpu-srv: true}" in output, output[-4000:]
    # pod_schedule_s is 5 s; the rest is the sim's start and the suite. Far below server_ready_s (600 s).
    assert elapsed < 150, f"took {elapsed:.0f}s: the wait did not give up early"
