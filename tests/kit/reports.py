"""Report documents for the gate tests: a capacity entry added to a report's data."""

from __future__ import annotations

from typing import Any


def capacity_step(rate: float, p99: float, ok: bool) -> dict[str, Any]:
    return {"offered_rate_rps": rate, "achieved_rate_rps": rate, "throughput_rps": rate, "requests": 100,
            "ok": 100, "errors": {}, "error_rate": 0.0,
            "latency_ms": {"p50": p99 / 3, "p95": p99 / 1.5, "p99": p99, "max": p99 * 2},
            "goodput_fraction": 1.0, "goodput_rps": rate, "late_send_fraction": 0.0,
            "client_cpu_ms_per_request": 0.05, "meets_slo": ok, "reasons": [] if ok else [f"p99 {p99:g} ms > 25"],
            "phase": "ramp", "elapsed_s": 1.0, "telemetry": None}


def with_capacity(data: dict[str, Any]) -> None:
    data["capacity"] = [{
        "model": "iris-gpu", "server": "mlserver-gpu", "node": "gpu-0", "endpoint": "http://127.0.0.1:1",
        "protocol": "http", "slo": {"p50_ms": None, "p95_ms": None, "p99_ms": 25.0, "max_error_rate": 0.0},
        "budget_s": 120.0, "capacity_rps": 100.0, "converged": True, "bounded": True, "stop_reason": "converged",
        "elapsed_s": 30.0, "steps": [capacity_step(100.0, 10.0, True), capacity_step(105.0, 90.0, False)],
        "complete": True,
        "failure": None}]
