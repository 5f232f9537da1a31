"""GPU telemetry during a load window: samples taken while the window runs, summarised per window.

The sampling function is injected (I/O stays with the caller): on a Triton Server it reads Triton's
metrics (`nv_gpu_utilization`, `nv_gpu_memory_used_bytes`, `nv_gpu_power_usage`) through the API
server's pod proxy; on the simulated cluster the caller marks the result `simulated`. A window's
summary is the mean utilization and power and the peak memory over its samples, so a capacity drop
can be told from a GPU that sat idle or was throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.gpu.triton import parse_metrics

# One sample every this many seconds; Triton refreshes its GPU gauges every 2 s by default.
SAMPLE_INTERVAL_S = 0.5


def triton_gpu_reading(text: str, gpu_uuids: Sequence[str] = ()) -> dict[str, float]:
    """Utilization (percent, mean over the GPUs), memory used (MiB, sum) and power (W, sum) from
    Triton's metrics text, restricted to `gpu_uuids` when given."""
    util: list[float] = []
    memory = power = 0.0
    seen = False
    for name, labels, value in parse_metrics(text):
        uuid = labels.get("gpu_uuid")
        if not uuid or (gpu_uuids and uuid not in gpu_uuids):
            continue
        if name == "nv_gpu_utilization":
            util.append(value * 100.0)  # Triton reports a fraction in [0, 1)
            seen = True
        elif name == "nv_gpu_memory_used_bytes":
            memory += value / (1024 * 1024)
            seen = True
        elif name == "nv_gpu_power_usage":
            power += value
    if not seen:
        return {}
    reading = {"utilization_percent": sum(util) / len(util) if util else 0.0, "memory_used_mib": memory}
    if power:
        reading["power_w"] = power
    return reading


def summarise(readings: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean utilization and power, peak memory over a window's readings (empty ones skipped)."""
    got = [r for r in readings if r]
    if not got:
        return {}
    out = {"samples": float(len(got))}
    for key in ("utilization_percent", "power_w"):
        values = [r[key] for r in got if key in r]
        if values:
            out[key] = round(sum(values) / len(values), 1)
    memory = [r["memory_used_mib"] for r in got if "memory_used_mib" in r]
    if memory:
        out["memory_used_mib"] = round(max(memory), 1)
    return out


class WindowSampler:
    """Samples `read()` on a thread from `begin()` until `end()`; `end()` returns the window summary
    plus `extra` (for instance `source`, `gpu_uuids`, `simulated`). A failing read is counted, not
    raised: telemetry must never fail a latency measurement."""

    def __init__(self, read: Callable[[], dict[str, float]], extra: dict[str, Any],
                 interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.read = read
        self.extra = extra
        self.interval_s = interval_s
        self.readings: list[dict[str, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.readings.append(self.read())
            except Exception as exc:  # any read problem is reported in the summary, never raised
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def begin(self) -> None:
        self.readings, self.failures = [], []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gpu-telemetry", daemon=True)
        self._thread.start()

    def end(self, _result: Any = None) -> dict[str, Any] | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        summary: dict[str, Any] = dict(summarise(self.readings))
        if not summary and not self.failures:
            return None
        summary.update(self.extra)
        if self.failures:
            summary["read_failures"] = len(self.failures)
            summary["last_failure"] = self.failures[-1][:200]
        return summary
