"""SLO verdicts over a latency result (the dict shape of `LoadResult.to_dict()`)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from harness.config import Slo
from harness.shapes import Record


class SloVerdict(Record):
    """One SLO limit against one measurement (each latency entry of the report lists them)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(
        description="p50_ms | p95_ms | p99_ms | min_throughput_rps | max_error_rate | achieved_rate | "
        "client_overloaded | complete"
    )
    limit: float | None
    actual: float | None
    ok: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# Open loop: the achieved rate must match the offered rate, or the percentiles describe a lighter
# load than the one asked for (design B3). 5 % leaves room for a shared CI machine.
ACHIEVED_RATE_TOLERANCE = 0.05


# A failure measured while the client itself was overloaded says nothing certain about the server
# (docs/load.md): more than this fraction of sends late (open loop), or the client's CPU per worker
# above this fraction of one core (CPU per request x achieved rate / workers).
CLIENT_LATE_SEND_LIMIT = 0.05
CLIENT_CPU_LIMIT = 0.9
CLIENT_OVERLOADED = "client_overloaded"


def client_load(result: dict[str, Any]) -> tuple[float, float]:
    """(fraction of sends late, client CPU per worker in cores) of a load result or sweep step: the two
    figures the overload limits judge."""
    late = float(result.get("late_send_fraction") or 0.0)
    workers = max(1, int(result.get("workers") or 1))
    busy = float(result.get("client_cpu_ms_per_request") or 0.0) * float(result.get("achieved_rate_rps") or 0.0)
    return late, busy / 1000.0 / workers


def client_overload(result: dict[str, Any]) -> str | None:
    """Why the load client was overloaded during `result`, with the figures; None when it was not."""
    why = []
    late, busy = client_load(result)
    if late > CLIENT_LATE_SEND_LIMIT:
        why.append(f"{late:.1%} of sends late > {CLIENT_LATE_SEND_LIMIT:.0%}")
    if busy > CLIENT_CPU_LIMIT:
        why.append(f"client CPU {busy:.2f} of a core per worker > {CLIENT_CPU_LIMIT:g}")
    return "; ".join(why) or None


def evaluate_slo(result: dict[str, Any], slo: Slo) -> list[SloVerdict]:
    verdicts: list[SloVerdict] = []
    latency = result.get("latency_ms") or {}
    for key in ("p50", "p95", "p99"):
        limit = getattr(slo, f"{key}_ms")
        if limit is None:
            continue
        actual = latency.get(key)
        ok = actual is not None and float(actual) <= limit
        verdicts.append(SloVerdict(
            name=f"{key}_ms", limit=limit, actual=actual, ok=ok,
            reason=f"{key} {actual:.2f} ms {'<=' if ok else '>'} SLO {limit:g} ms" if actual is not None
            else f"{key} not measured",
        ))
    throughput = float(result.get("throughput_rps") or 0.0)
    if slo.min_throughput_rps > 0:
        ok = throughput >= slo.min_throughput_rps
        verdicts.append(SloVerdict(
            name="min_throughput_rps", limit=slo.min_throughput_rps, actual=throughput, ok=ok,
            reason=f"throughput {throughput:.1f} req/s {'>=' if ok else '<'} SLO {slo.min_throughput_rps:g} req/s",
        ))
    error_rate = float(result.get("error_rate") or 0.0)
    ok = error_rate <= slo.max_error_rate
    verdicts.append(SloVerdict(
        name="max_error_rate", limit=slo.max_error_rate, actual=error_rate, ok=ok,
        reason=f"error rate {error_rate:.2%} {'<=' if ok else '>'} SLO {slo.max_error_rate:.2%}"
        + (f" (errors: {result.get('errors')})" if not ok else ""),
    ))
    offered = result.get("offered_rate_rps")
    if offered:
        achieved = float(result.get("achieved_rate_rps") or 0.0)
        ok = achieved >= offered * (1 - ACHIEVED_RATE_TOLERANCE)
        verdicts.append(SloVerdict(
            name="achieved_rate", limit=float(offered), actual=achieved, ok=ok,
            reason=f"achieved {achieved:.1f} of {float(offered):g} req/s offered"
            + ("" if ok else f" (more than {ACHIEVED_RATE_TOLERANCE:.0%} short: the client could not offer the load)"),
        ))
    overloaded = client_overload(result) if any(not v.ok for v in verdicts) else None
    if overloaded is not None:
        verdicts.append(SloVerdict(name=CLIENT_OVERLOADED, limit=None, actual=None, ok=False,
                                   reason=f"inconclusive: the load client was overloaded ({overloaded}); the "
                                          "figures may describe the client, not the server"))
    complete = bool(result.get("complete", True))
    if not complete:
        verdicts.append(SloVerdict(name="complete", limit=None, actual=None, ok=False,
                                   reason=f"run incomplete: {result.get('failure')}"))
    return verdicts


def failed(verdicts: list[SloVerdict]) -> list[SloVerdict]:
    return [v for v in verdicts if not v.ok]
