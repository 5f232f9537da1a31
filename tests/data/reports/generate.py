"""Regenerate the crafted reports in this folder: `.venv/bin/python tests/data/reports/generate.py`.

pass.json        kind, every check passes, two models at 100 rps open loop
baseline.json    the same run with every latency 5 % lower (pass.json is +5.3 % against it)
failed-check.json  pass.json with a failed GPU visibility check
simulated.json   a passing run on the simulated cluster
not-json.json, wrong-version.json, missing-field.json   unusable input (exit 2)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.report import ReportBuilder, RunReport, dump_report
from harness.report.model import Selection

OUT = Path(__file__).resolve().parent
T0 = datetime(2026, 11, 28, 2, 17, 0, tzinfo=UTC)
GPU_UUID = "GPU-4f6a1c2e-8b0d-4e57-9a3c-1d2e3f405162"
SLO = {"p50_ms": 20, "p95_ms": 50, "p99_ms": 100, "min_throughput_rps": 50, "max_error_rate": 0.001}


def _clock() -> Callable[[], datetime]:
    t = [T0]

    def now() -> datetime:
        t[0] += timedelta(seconds=30)
        return t[0]

    return now


def _monotonic() -> Callable[[], float]:
    t = [0.0]

    def mono() -> float:
        t[0] += 12.5
        return t[0]

    return mono


def node(name: str, role: str, gpus: int = 0) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    taints: list[dict[str, str]] = []
    if role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    if role == "gpu":
        labels.update({"pool": "infer-srv", "nvidia.com/gpu.present": "true",
                       "nvidia.com/gpu.product": "NVIDIA-H200", "nvidia.com/gpu.count": str(gpus)})
        taints = [{"key": "seldon-gpu-srv", "value": "true", "effect": "NoSchedule"}]
    alloc = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    if gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
            "status": {"allocatable": alloc, "capacity": alloc}}


def load(model: str, p50: float, p95: float, p99: float, rate: float = 100.0) -> dict[str, Any]:
    return {
        "engine": "harness", "mode": "open", "protocol": "http", "endpoint": "http://127.0.0.1:30080",
        "model": model, "offered_rate_rps": rate, "concurrency": None, "poisson": False, "duration_s": 30.0,
        "warmup_s": 5.0, "workers": 2, "requests": int(rate * 30), "ok": int(rate * 30), "errors": {},
        "error_rate": 0.0, "achieved_rate_rps": rate * 0.998, "throughput_rps": rate * 0.998, "late_sends": 3,
        "late_send_fraction": 0.001,
        "latency_ms": {"min": p50 / 2, "mean": p50 * 1.1, "p50": p50, "p90": (p50 + p95) / 2, "p95": p95,
                       "p99": p99, "p99_9": p99 * 1.5, "max": p99 * 2},
        "stable": True, "trials": 1, "windows": [{"throughput_rps": rate, "p99_ms": p99}] * 3,
        "client_cpu_ms_per_request": 0.7, "complete": True, "failure": None,
    }


def build(run_id: str, provider: str = "kind", fail: bool = False, factor: float = 1.0) -> RunReport:
    sim = provider == "sim"
    profile = "sim" if sim else "kind-gpu"
    b = ReportBuilder(run_id, provider="sim" if sim else "kind", simulated=sim, profile_name=profile,
                      profile_path=f"profiles/{profile}.yaml", now=_clock(), monotonic=_monotonic())
    with b.phase("cluster create"):
        pass
    with b.phase("seldon install"):
        pass
    b.set_cluster(kubernetes_version="v1.32.2", seldon_version="2.10.2", gpu_toleration_admission=False)
    b.set_nodes([node("seldon-gpu-control-plane", "control-plane"), node("seldon-gpu-worker", "cpu"),
                 node("seldon-gpu-worker2", "gpu", 1)], gpu_uuids={"seldon-gpu-worker2": [GPU_UUID]})
    b.add_placement({"metadata": {"name": "mlserver-gpu-0", "namespace": "seldon-mesh",
                                  "labels": {"seldon-server-name": "mlserver-gpu"}},
                     "spec": {"nodeName": "seldon-gpu-worker2",
                              "containers": [{"name": "mlserver",
                                              "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
                    "pass", gpu_uuids=[GPU_UUID])
    b.add_placement({"metadata": {"name": "mlserver-cpu-0", "namespace": "seldon-mesh",
                                  "labels": {"seldon-server-name": "mlserver-cpu"}},
                     "spec": {"nodeName": "seldon-gpu-worker", "containers": [{"name": "mlserver"}]}}, "pass")
    b.add_placement({"metadata": {"name": "seldon-scheduler-0", "namespace": "seldon-mesh",
                                  "ownerReferences": [{"kind": "StatefulSet", "name": "seldon-scheduler"}]},
                     "spec": {"nodeName": "seldon-gpu-worker"}}, "pass")
    b.add_check("suites/test_placement.py::test_gpu_server_pods_on_gpu_pool",
                "GPU Server pods run on the tainted GPU pool", "pass", suite="placement", duration_s=1.2)
    b.add_check("suites/test_placement.py::test_nothing_else_on_gpu_nodes",
                "nothing without the toleration runs on GPU nodes", "pass", suite="isolation", duration_s=0.4)
    b.add_check("suites/test_placement.py::test_models_on_intended_servers",
                "each Model is loaded by its intended Server", "pass", suite="placement", duration_s=0.3)
    b.add_check("suites/test_gpu.py::test_probe_sees_allocated_gpus", "a GPU pod sees exactly its allocated GPUs",
                "fail" if fail else "pass", suite="gpu", duration_s=4.1,
                reason="pod probe-gpu sees 2 GPUs (GPU-4f6a…, GPU-9c0d…), allocated 1 (GPU-4f6a…)" if fail else "")
    b.add_check("suites/test_gpu.py::test_cpu_pod_sees_no_gpu", "a pod that asked for no GPU sees none", "pass",
                suite="gpu", duration_s=3.9)
    probe = {"schema_version": 1, "hostname": "probe-gpu", "nvml_available": True, "driver_version": "570.124.06",
             "device_count": 1, "env": {"NVIDIA_VISIBLE_DEVICES": GPU_UUID},
             "devices": [{"index": 0, "name": "NVIDIA H200", "uuid": GPU_UUID}], "errors": []}
    b.add_probe("probe-gpu", "t-gpu-1a2b", probe, [], node="seldon-gpu-worker2", gpus_requested=1)
    with b.phase("load iris-gpu"):
        pass
    b.add_latency(load("iris-gpu", 4.0 * factor, 7.5 * factor, 12.0 * factor), server="mlserver-gpu",
                  node="seldon-gpu-worker2", gpu_uuids=[GPU_UUID], slo=SLO)
    b.add_latency(load("iris-cpu", 5.0 * factor, 9.0 * factor, 15.0 * factor), server="mlserver-cpu",
                  node="seldon-gpu-worker", slo=SLO)
    b.add_check("suites/test_latency.py::test_latency_slo[iris-gpu]", "iris-gpu meets its latency SLO", "pass",
                suite="latency", duration_s=35.0)
    b.add_check("suites/test_latency.py::test_latency_slo[iris-cpu]", "iris-cpu meets its latency SLO", "pass",
                suite="latency", duration_s=35.0)
    b.add_check("suites/test_model_scheduling.py::test_models_ready_on_intended_servers",
                "each Model is ready on the Server it was meant for", "pass", suite="scheduling", duration_s=0.5)
    b.add_artifact("evidence/seldon-mesh/events.txt", "events of the Seldon namespace")
    # The whole suites folder ran: every test above was selected and judged.
    b.set_selection(Selection(args=["suites/"], tests=[c.id for c in b.snapshot().checks], whole=True))
    return b.finish()


def main(out: Path = OUT) -> None:
    (out / "pass.json").write_text(dump_report(build("nightly-1001")))
    (out / "baseline.json").write_text(dump_report(build("nightly-1000", factor=0.95)))
    (out / "failed-check.json").write_text(dump_report(build("nightly-1002", fail=True)))
    (out / "simulated.json").write_text(dump_report(build("sim-local", provider="sim")))
    (out / "not-json.json").write_text('{"schema_version": "1", "run_id": \n')
    good = json.loads((out / "pass.json").read_text())
    (out / "wrong-version.json").write_text(json.dumps({**good, "schema_version": "2"}, indent=2) + "\n")
    good["latency"][0]["result"]["latency_ms"].pop("p99")
    (out / "missing-field.json").write_text(json.dumps(good, indent=2) + "\n")


if __name__ == "__main__":
    main()
