"""Stability of a measurement, judged the way perf_analyzer does it: the last three windows agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STABLE_WINDOWS = 3


@dataclass(frozen=True)
class WindowStat:
    throughput_rps: float
    p99_ms: float


def _within(values: Sequence[float], tolerance: float) -> bool:
    mean = sum(values) / len(values)
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= tolerance * mean for v in values)


def is_stable(windows: Sequence[WindowStat], tolerance: float, count: int = STABLE_WINDOWS) -> bool:
    """True when the last `count` windows each lie within `tolerance` (a fraction) of their mean,
    on throughput and on p99 latency. Fewer windows than `count` are never stable."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    return _within([w.throughput_rps for w in last], tolerance) and _within([w.p99_ms for w in last], tolerance)
