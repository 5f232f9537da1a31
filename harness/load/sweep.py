"""Capacity at SLO: the highest open-loop rate whose window meets the SLO, found by a bounded search.

A geometric ramp (start, start*g, start*g^2, ...) runs until the first step that misses the SLO,
then bisection (geometric midpoints) between the highest passing and the lowest failing rate until
they are within `resolution` of each other, the steps run out or the time budget would be exceeded.
The answer is then measured again (`confirmations`): one lucky window near a sharp knee is not a
capacity, so a miss on the re-measurement makes that rate a failure and the bisection goes on below.
Every step is one short open-loop window after its own warm-up; its verdict is the same SLO check as
the latency suite's (percentiles, error rate, achieved rate, completeness). A miss measured while the
load client was overloaded is inconclusive: that rate is measured once more before a miss there counts.

`next_rate` is the pure decision; `run_sweep` drives it with a `measure` function (the engine).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import Field, model_validator

from harness.checks.slo import CLIENT_OVERLOADED, evaluate_slo, failed
from harness.config import Slo
from harness.errors import UsageError
from harness.load.engine import run_load
from harness.load.result import LoadResult, fraction
from harness.load.spec import LoadSpec, SweepPhase
from harness.load.spec import Protocol as LoadProtocol
from harness.shapes import Record, rounded


@dataclass(frozen=True)
class SweepPlan:
    start_rate: float = 20.0
    growth: float = 2.0
    # Bisection stops when the failing rate is within this fraction above the passing one.
    resolution: float = 0.05
    budget_s: float = 120.0
    step_s: float = 3.0
    warmup_s: float = 1.0
    # Below this rate the service is declared to have no capacity at the SLO.
    min_rate: float = 1.0
    max_steps: int = 40
    # A p99 from a handful of samples is noise: a step lasts long enough for this many requests
    # (at most `max_step_s`), so its p99 rests on several samples above it.
    min_requests: int = 300
    max_step_s: float = 10.0
    # The answer must meet the SLO this many times (and never miss): a knee is sharp and a busy
    # machine adds noise, so a single passing window is a candidate, not a capacity.
    confirmations: int = 2

    def validate(self, source: str = "--sweep") -> SweepPlan:
        if not self.start_rate > 0:
            raise UsageError(f"{source}: start_rate: expected req/s > 0, got {self.start_rate!r}")
        if not self.growth > 1:
            raise UsageError(f"{source}: growth: expected a factor > 1, got {self.growth!r}")
        if not 0 < self.resolution < 1:
            raise UsageError(f"{source}: resolution: expected a fraction in (0, 1), got {self.resolution!r}")
        if not self.budget_s > 0 or not self.step_s > 0 or self.warmup_s < 0:
            raise UsageError(f"{source}: budget_s and step_s must be > 0 and warmup_s >= 0")
        if self.confirmations < 1:
            raise UsageError(f"{source}: confirmations: expected an integer >= 1, got {self.confirmations!r}")
        if self.step_s + self.warmup_s > self.budget_s:
            raise UsageError(f"{source}: budget_s {self.budget_s:g} is shorter than one step "
                             f"(warmup_s {self.warmup_s:g} + step_s {self.step_s:g})")
        return self


def bracket(history: Sequence[tuple[float, bool]]) -> tuple[float | None, float | None]:
    """(highest passing rate below the lowest failing one, lowest failing rate) of the steps so far.

    A pass above a failure (noise on a busy machine) does not move the bracket: the lowest failure
    bounds the capacity, so the answer errs on the safe side."""
    fails = [rate for rate, ok in history if not ok]
    hi = min(fails) if fails else None
    passes = [rate for rate, ok in history if ok and (hi is None or rate < hi)]
    return (max(passes) if passes else None), hi


def counted(steps: Sequence[SweepStep]) -> list[tuple[float, bool]]:
    """(offered rate, met the SLO) of the steps that decide the capacity, in order: all of them except the
    first inconclusive miss at a rate (`client_overloaded`), which the sweep measures again. The one
    reading of a sweep's steps: `run_sweep` decides with it, the report's consistency check and the
    gate recompute the bracket with it."""
    history: list[tuple[float, bool]] = []
    remeasured: set[float] = set()
    for step in steps:
        rate = step.offered_rate_rps
        if step.client_overloaded and not step.meets_slo and rate not in remeasured:
            remeasured.add(rate)
        else:
            history.append((rate, step.meets_slo))
    return history


def next_rate(history: Sequence[tuple[float, bool]], plan: SweepPlan) -> float | None:
    """The next offered rate to measure, or None when the search has converged."""
    if not history:
        return plan.start_rate
    lo, hi = bracket(history)
    if hi is None:
        assert lo is not None
        return lo * plan.growth
    if lo is None:
        # Even the first step failed: ramp down until one passes, never below the floor (`min_rate`,
        # raised to a throughput SLO's minimum by `run_sweep`), which is measured last.
        if hi <= plan.min_rate * (1 + plan.resolution):
            return None
        return max(hi / plan.growth, plan.min_rate)
    if hi <= lo * (1 + plan.resolution):
        return None if confirmed(history, lo, plan) else lo
    return math.sqrt(lo * hi)


def confirmed(history: Sequence[tuple[float, bool]], rate: float, plan: SweepPlan) -> bool:
    """Whether `rate` met the SLO `plan.confirmations` times (a miss there makes it a failure)."""
    return sum(1 for r, ok in history if r == rate and ok) >= plan.confirmations


def step_seconds(rate: float, plan: SweepPlan) -> float:
    """How long one step at `rate` measures: `step_s`, longer at low rates (see `min_requests`)."""
    return max(plan.step_s, min(plan.max_step_s, plan.min_requests / rate))


def latency_bound_ms(slo: Slo) -> float | None:
    """The per-request latency bound that goodput counts against: the tightest-tail SLO given."""
    return slo.p99_ms or slo.p95_ms or slo.p50_ms


class SweepStep(Record):
    """One step of a capacity sweep (one open-loop window at one offered rate)."""

    offered_rate_rps: Annotated[float, rounded(3)]
    achieved_rate_rps: Annotated[float, rounded(3)]
    throughput_rps: Annotated[float, rounded(3)]
    requests: int
    ok: int
    errors: dict[str, int]
    error_rate: Annotated[float, rounded(6)]
    latency_ms: dict[str, float] = Field(description="p50, p95, p99, max")
    goodput_fraction: Annotated[float, rounded(6)] = Field(
        description="requests that succeeded within the latency bound / requests")
    goodput_rps: Annotated[float, rounded(3)]
    late_send_fraction: Annotated[float, rounded(6)]
    client_cpu_ms_per_request: Annotated[float, rounded(4)]
    meets_slo: bool
    reasons: list[str]
    # Defaults: reports written before these fields existed judged every miss (one worker is the
    # strictest reading of the CPU per worker).
    workers: int = Field(default=1, description="load client processes; their CPU is judged per worker")
    client_overloaded: bool = Field(
        default=False, description="missed the SLO while the load client was overloaded (inconclusive); the "
        "first such miss at a rate is measured again and does not count (`counted`)")
    phase: SweepPhase
    elapsed_s: Annotated[float, rounded(3)]
    telemetry: dict[str, Any] | None = Field(
        default=None, description="GPU telemetry during the step's window; `simulated: true` on the sim")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class SweepResult(Record):
    """Capacity at SLO of one model: the answer and every step that led to it."""

    endpoint: str
    model: str
    protocol: LoadProtocol
    slo: dict[str, float | None]
    budget_s: float
    capacity_rps: Annotated[float, rounded(3)] = Field(
        description="highest passing offered rate below the lowest failing one; 0 if none")
    converged: bool
    bounded: bool = Field(description="true when a step missed the SLO, so capacity_rps is bracketed from above; "
                          "false: capacity is at least capacity_rps, not bounded within the budget")
    stop_reason: str
    elapsed_s: Annotated[float, rounded(3)]
    # No defaults, as in `LoadResult`: a report without these keys is not a complete sweep.
    steps: list[SweepStep]
    complete: bool
    failure: str | None

    @model_validator(mode="before")
    @classmethod
    def _bounded_from_steps(cls, data: Any) -> Any:
        # Reports written before `bounded` existed stay readable (a baseline may be one): it is
        # exactly whether a step missed the SLO, so it can be drawn from the steps they hold.
        if isinstance(data, dict) and "bounded" not in data and isinstance(data.get("steps"), list):
            data = {**data, "bounded": any(isinstance(s, dict) and s.get("meets_slo") is False
                                           for s in data["steps"])}
        return data

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (`harness load --sweep --json`; the report's `capacity[]` adds where it ran)."""
        return self.model_dump()


# The latency percentiles a step keeps (the full set is in each latency entry of the report).
STEP_PERCENTILES = ("p50", "p95", "p99", "max")


def step_of(result: LoadResult, slo: Slo, phase: SweepPhase, elapsed_s: float) -> SweepStep:
    verdicts = failed(evaluate_slo(result.to_dict(), slo))
    seconds = result.duration_s
    good = result.good if result.good is not None else result.ok
    return SweepStep(
        offered_rate_rps=float(result.offered_rate_rps or 0.0), achieved_rate_rps=result.achieved_rate_rps,
        throughput_rps=result.throughput_rps, requests=result.requests, ok=result.ok, errors=dict(result.errors),
        error_rate=result.error_rate,
        latency_ms={key: getattr(result.latency_ms, key) for key in STEP_PERCENTILES},
        goodput_fraction=fraction(good, result.requests),
        goodput_rps=good / seconds if seconds else 0.0, late_send_fraction=result.late_send_fraction,
        client_cpu_ms_per_request=result.client_cpu_ms_per_request, meets_slo=not verdicts,
        reasons=[v.reason for v in verdicts], workers=result.workers,
        client_overloaded=any(v.name == CLIENT_OVERLOADED for v in verdicts), phase=phase, elapsed_s=elapsed_s,
    )


# The simulated cluster has no GPU: its telemetry is a stated model, marked `simulated`, never a
# reading. Each successful request is taken to keep the GPU busy this long.
SIM_GPU_MS_PER_REQUEST = 1.0
SIM_MEMORY_USED_MIB = 1024.0
SIM_IDLE_W, SIM_W_PER_UTIL_PERCENT = 60.0, 2.4


class Telemetry(Protocol):
    """GPU telemetry around one step: `begin()` before the window, `end(result)` after it."""

    def begin(self) -> None: ...

    def end(self, result: LoadResult) -> dict[str, Any] | None: ...


class SimulatedTelemetry:
    """Per-window GPU telemetry for a model on the simulated cluster without a GPU endpoint, derived
    from the window's throughput by the stated model above and marked `simulated`."""

    def __init__(self, gpu_uuids: Sequence[str]) -> None:
        self.gpu_uuids = list(gpu_uuids)

    def begin(self) -> None:
        return None

    def end(self, result: LoadResult) -> dict[str, Any]:
        util = min(100.0, result.throughput_rps * SIM_GPU_MS_PER_REQUEST / 10.0)
        return {
            "simulated": True, "source": "sim model (no GPU)", "gpu_uuids": self.gpu_uuids,
            "utilization_percent": round(util, 1), "memory_used_mib": SIM_MEMORY_USED_MIB,
            "power_w": round(SIM_IDLE_W + SIM_W_PER_UTIL_PERCENT * util, 1),
        }


def plan_from_profile(sweep: Any) -> SweepPlan:
    """A `SweepPlan` from the profile's `load.sweep` block (`harness.config.LoadSweep`)."""
    return SweepPlan(start_rate=sweep.start_rate, growth=sweep.growth, resolution=sweep.resolution,
                     budget_s=sweep.budget_s, step_s=sweep.step_s, warmup_s=sweep.warmup_s,
                     min_requests=sweep.min_requests, confirmations=sweep.confirmations).validate("load.sweep")


def run_sweep(
    spec: LoadSpec,
    slo: Slo,
    plan: SweepPlan,
    measure: Callable[[LoadSpec], LoadResult] = run_load,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
    telemetry: Telemetry | None = None,
) -> SweepResult:
    """Search the capacity at `slo` for the endpoint and model of `spec` (its rate is ignored)."""
    plan.validate()
    # A throughput SLO is a floor: a rate below it can never pass, so the sweep never measures one.
    if slo.min_throughput_rps > plan.min_rate:
        plan = dataclasses.replace(plan, min_rate=slo.min_throughput_rps,
                                   start_rate=max(plan.start_rate, slo.min_throughput_rps))
    bound = latency_bound_ms(slo)
    if bound is None:
        raise UsageError("--sweep: needs a latency SLO (--slo-p99-ms, --slo-p95-ms or --slo-p50-ms)")
    template = dataclasses.replace(
        spec, mode="open", rate=plan.start_rate, concurrency=None, duration_s=plan.step_s, window_s=plan.step_s,
        warmup_s=plan.warmup_s, max_trials=1, goodput_ms=bound,
    ).validate()
    started = clock()
    history: list[tuple[float, bool]] = []
    steps: list[SweepStep] = []
    # The cost of a step beyond its planned seconds (worker start, drain); learnt from the steps run.
    overhead = 0.5
    reason = "converged"
    failure = None
    while True:
        rate = next_rate(history, plan)
        if rate is None:
            lo, _ = bracket(history)
            reason = "converged" if lo is not None else f"no rate down to {plan.min_rate:g} req/s meets the SLO"
            break
        if len(steps) >= plan.max_steps:
            reason = f"step limit ({plan.max_steps}) reached"
            break
        elapsed = clock() - started
        seconds = step_seconds(rate, plan)
        if elapsed + plan.warmup_s + seconds + overhead > plan.budget_s:
            reason = f"time budget {plan.budget_s:g} s reached"
            break
        phase: SweepPhase
        if any(r == rate for r, _ in history):
            phase = "confirm"
        elif any(not ok for _, ok in history) and any(ok for _, ok in history):
            phase = "bisect"
        else:
            phase = "ramp"
        if progress is not None:
            progress(f"sweep: step {len(steps) + 1} at {rate:.1f} req/s ({phase})")
        step_start = clock()
        if telemetry is not None:
            telemetry.begin()
        result = measure(dataclasses.replace(template, rate=rate, duration_s=seconds, window_s=seconds))
        took = clock() - step_start
        overhead = max(overhead, took - plan.warmup_s - seconds)
        step = step_of(result, slo, phase, clock() - started)
        if telemetry is not None:
            step.telemetry = telemetry.end(result)
        steps.append(step)
        # A miss measured while the client itself could not keep the schedule says nothing certain
        # about the server (checks/slo.py): it is measured again once before it may bound the capacity.
        history = counted(steps)
        if not result.complete:
            reason = "a step did not complete"
            failure = result.failure
            break
    lo, hi = bracket(history)
    converged = (lo is not None and hi is not None and hi <= lo * (1 + plan.resolution)
                 and confirmed(history, lo, plan))
    return SweepResult(
        endpoint=spec.endpoint, model=spec.model, protocol=spec.protocol,
        slo={"p50_ms": slo.p50_ms, "p95_ms": slo.p95_ms, "p99_ms": slo.p99_ms, "max_error_rate": slo.max_error_rate},
        budget_s=plan.budget_s, capacity_rps=lo or 0.0, converged=converged, bounded=hi is not None,
        stop_reason=reason,
        elapsed_s=clock() - started, steps=steps, complete=failure is None, failure=failure,
    )
