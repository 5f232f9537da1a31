"""GPU telemetry per load window: Triton metrics parsing, window summaries, the sampler, the sweep hook."""

from __future__ import annotations

import threading

from harness.config import Slo
from harness.load.spec import LoadSpec
from harness.load.sweep import SimulatedTelemetry, SweepPlan, run_sweep
from harness.load.telemetry import WindowSampler, summarise, triton_gpu_reading
from tests.kit.load_servers import ModelledServer

METRICS = """# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-a"} 0.5
nv_gpu_utilization{gpu_uuid="GPU-b"} 0.1
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 2147483648
nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 1048576
nv_gpu_power_usage{gpu_uuid="GPU-a"} 150.5
nv_inference_count{model="m",version="1"} 12
"""


def test_triton_reading_restricted_to_the_served_gpus() -> None:
    assert triton_gpu_reading(METRICS, ["GPU-a"]) == {"utilization_percent": 50.0, "memory_used_mib": 2048.0,
                                                     "power_w": 150.5}
    both = triton_gpu_reading(METRICS)
    assert both["utilization_percent"] == 30.0 and both["memory_used_mib"] == 2049.0
    assert triton_gpu_reading("nv_inference_count 3\n") == {}


def test_summary_is_mean_utilization_and_power_and_peak_memory() -> None:
    got = summarise([{"utilization_percent": 10.0, "memory_used_mib": 100.0, "power_w": 60.0}, {},
                     {"utilization_percent": 30.0, "memory_used_mib": 300.0, "power_w": 80.0}])
    assert got == {"samples": 2.0, "utilization_percent": 20.0, "power_w": 70.0, "memory_used_mib": 300.0}
    assert summarise([{}, {}]) == {}


def test_sampler_reads_during_the_window_and_never_raises() -> None:
    calls = threading.Semaphore(0)
    values = iter([{"utilization_percent": 40.0, "memory_used_mib": 10.0}] * 1000)

    def read() -> dict[str, float]:
        calls.release()
        return next(values)

    sampler = WindowSampler(read, {"source": "test", "simulated": False}, interval_s=0.01)
    sampler.begin()
    assert calls.acquire(timeout=5) and calls.acquire(timeout=5)
    summary = sampler.end()
    assert summary is not None and summary["samples"] >= 2 and summary["utilization_percent"] == 40.0
    assert summary["source"] == "test" and summary["simulated"] is False

    def broken() -> dict[str, float]:
        raise OSError("pod proxy refused")

    failing = WindowSampler(broken, {"source": "test"}, interval_s=0.01)
    failing.begin()
    result = failing.end()
    assert result is not None and result["read_failures"] >= 1 and "pod proxy refused" in result["last_failure"]


def test_sweep_attaches_one_telemetry_window_per_step() -> None:
    server = ModelledServer(100.0)
    spec = LoadSpec(endpoint="http://127.0.0.1:1", model="m", rate=1.0, duration_s=3.0)
    result = run_sweep(spec, Slo(p99_ms=25.0), SweepPlan(start_rate=20, min_requests=0), measure=server.measure,
                       clock=server.clock, telemetry=SimulatedTelemetry(["GPU-x"]))
    assert result.steps and all(s.telemetry is not None and s.telemetry["simulated"] is True
                                and s.telemetry["gpu_uuids"] == ["GPU-x"] for s in result.steps)
    busiest = max(result.steps, key=lambda s: s.throughput_rps)
    assert busiest.telemetry is not None and busiest.telemetry["utilization_percent"] > 0
