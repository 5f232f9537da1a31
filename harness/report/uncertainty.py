"""How uncertain a reported latency percentile is, from what the report holds about its measurement.

A percentile measured from n samples is one order statistic; another run of the same system puts it
somewhere else. Two sources of that spread are in every report:

- the sample count: the rank of the q-th percentile among n samples is binomial, so a
  distribution-free 99 % confidence interval for it spans the quantiles q ± z·sqrt(q(1-q)/n) (plus
  one rank for the discreteness). The quantile function between the reported points (min, p50, p90,
  p95, p99, p99.9, max) is read by linear interpolation, which is all the report keeps of the
  histogram. With 120 samples the p95 and p99 intervals reach past the slowest request, so nothing
  bounds them from above (the gate then cannot call them regressed; p50 still can);
- the windows (of every trial): each window's p99 is an independent re-measurement of the tail
  under the same load, so the p99 interval is widened to cover every window's p99.

Pure functions over the report model; the gate (harness/report/gate.py) compares intervals.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from harness.load.result import LatencyPercentiles, LoadResult

# Two-sided 99 %: a pair of identical runs shows disjoint intervals far less often than 1 in 100.
Z_99 = 2.576
_POINTS: tuple[tuple[str, float], ...] = (
    ("min", 0.0), ("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999), ("max", 1.0),
)
QUANTILE_OF = {name: q for name, q in _POINTS}


@dataclass(frozen=True)
class Interval:
    """Where the percentile of another run of the same system would lie (milliseconds)."""

    low: float
    high: float
    samples: int
    windows: int

    def describe(self) -> str:
        high = "unbounded" if math.isinf(self.high) else f"{self.high:.2f}"
        return f"[{self.low:.2f}, {high}]"


def quantile_curve(latency: LatencyPercentiles) -> list[tuple[float, float]]:
    """(quantile, ms) points, made non-decreasing (rounding can leave p99.9 a hair under p99)."""
    curve: list[tuple[float, float]] = []
    top = 0.0
    for name, q in _POINTS:
        top = max(top, float(getattr(latency, name)))
        curve.append((q, top))
    return curve


def quantile_at(curve: list[tuple[float, float]], q: float) -> float:
    """The latency at quantile `q`, linear between the reported points."""
    q = min(1.0, max(0.0, q))
    for (q0, v0), (q1, v1) in itertools.pairwise(curve):
        if q <= q1:
            return v0 if q1 == q0 else v0 + (v1 - v0) * (q - q0) / (q1 - q0)
    return curve[-1][1]


def percentile_interval(result: LoadResult, percentile: str, z: float = Z_99) -> Interval:
    """The uncertainty interval of `percentile` ("p50", "p95", "p99", ...) of one measurement."""
    q = QUANTILE_OF[percentile]
    value = float(getattr(result.latency_ms, percentile))
    n = int(result.ok)
    if n <= 0:
        return Interval(0.0, math.inf, 0, len(result.windows))  # nothing measured: anything is possible
    curve = quantile_curve(result.latency_ms)
    half = z * math.sqrt(q * (1.0 - q) / n) + 1.0 / n
    low = min(value, quantile_at(curve, q - half))
    # When the interval's upper rank lies past the last sample, the slowest request seen does not bound
    # the percentile: another run of the same system may well show a slower one. Then nothing bounds it
    # from above (about 170 samples are needed before p95 is bounded, about 900 for p99).
    high = math.inf if q + half >= 1.0 else max(value, quantile_at(curve, q + half))
    if percentile == "p99" and result.windows:
        low = min(low, *(w.p99_ms for w in result.windows))
        high = max(high, *(w.p99_ms for w in result.windows))
    return Interval(low, high, n, len(result.windows))
