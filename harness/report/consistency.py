"""Does the report agree with itself? The gate recomputes every verdict it relies on from raw figures.

A report.json is a file anyone with write access can edit. The verdicts in it (an SLO's `ok`, a
sweep's `meets_slo`, `simulated`, `selection.whole`, `interrupted`) are conclusions drawn from other
fields of the same file, so the gate draws them again and refuses a report whose recorded conclusion
contradicts its own figures, naming both sides. Pure: each problem is `(kind, subject, detail)` with
kind `tampered` (the gate's first line then says REFUSED).

What it cannot see: a consistent edit of the raw figures themselves (a p99 lowered below its limit
together with its verdict). Signed reports (`harness.report.signature`, `gate --require-signature`)
close that gap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.checks.slo import CLIENT_CPU_LIMIT, CLIENT_LATE_SEND_LIMIT, SloVerdict, client_load, evaluate_slo
from harness.report.model import CapacityEntry, LatencyEntry, RunReport

if TYPE_CHECKING:
    from harness.load.sweep import SweepStep

Problem = tuple[str, str, str]

# The API server of the harness's simulated cluster marks its gitVersion with this build metadata.
SIM_VERSION_MARK = "+harness-sim"
# Figures are rounded when written (`harness.shapes.rounded`): comparisons allow that much.
_TOLERANCE = 1e-3
# Test ids the harness records besides pytest's own (cleanup, evidence).
HARNESS_CHECK_PREFIX = "harness::"
_PERCENTILE_ORDER = ("min", "p50", "p90", "p95", "p99", "p99_9", "max")


def _close(a: float | None, b: float | None, abs_tol: float = _TOLERANCE) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=_TOLERANCE, abs_tol=abs_tol)


# Fractions (error rate, late sends) are written to 6 decimals.
_FRACTION_TOLERANCE = 1e-6


def contradictions(report: RunReport) -> list[Problem]:
    """Every place where a recorded conclusion disagrees with the figures it was drawn from."""
    problems: list[Problem] = []
    problems += _simulated(report)
    problems += _interruption(report)
    problems += _selection(report)
    for entry in report.latency:
        problems += _latency(entry)
    for sweep in report.capacity:
        problems += _capacity(sweep)
    return problems


def _simulated(report: RunReport) -> list[Problem]:
    if report.simulated:
        return []
    subject = f"run {report.run_id}"
    version = report.cluster.kubernetes_version or ""
    why = []
    if report.provider == "sim":
        why.append("provider: sim")
    if SIM_VERSION_MARK in version:
        why.append(f"cluster.kubernetes_version: {version!r} (the simulated API server's marker)")
    if report.rehearsal is not None:
        why.append(f"rehearsal of a {report.rehearsal.provider} profile (rehearsals run on the simulated cluster)")
    if report.cluster.simulated_reason:
        why.append(f"cluster.simulated_reason: {report.cluster.simulated_reason!r}")
    return [("tampered", subject, f"simulated: false beside {why[0]}")] if why else []


def _interruption(report: RunReport) -> list[Problem]:
    if report.interrupted:
        return []
    subject = f"run {report.run_id}"
    if report.interrupted_reason:
        return [("tampered", subject,
                 f"interrupted: false beside interrupted_reason {report.interrupted_reason!r}")]
    running = [p.name for p in report.phases if p.status == "running"]
    if running and report.finished is not None:
        return [("tampered", subject, f"interrupted: false beside phase {running[0]!r} still running "
                                      f"in a finished report")]
    for phase in report.phases:
        if phase.error and "KeyboardInterrupt" in phase.error:
            return [("tampered", subject, f"interrupted: false beside phase {phase.name!r} failed with "
                                          f"{phase.error[:80]!r}")]
    return []


def _selection(report: RunReport) -> list[Problem]:
    subject = f"run {report.run_id}"
    problems: list[Problem] = []
    seen: set[str] = set()
    for check in report.checks:
        if check.id in seen:
            problems.append(("tampered", subject, f"check {check.id!r} has more than one verdict (the harness "
                                                  "keeps the last one only)"))
            break
        seen.add(check.id)
    sel = report.selection
    if sel is None:
        return problems
    if sel.whole:
        named = [a for a in sel.args if "::" in a]
        why = (f"deselected: {sel.deselected}" if sel.deselected else f"keyword: {sel.keyword!r}" if sel.keyword
               else f"markers: {sel.markers!r}" if sel.markers else f"args naming single tests {named[:2]}" if named
               else "")
        if why:
            problems.append(("tampered", subject, f"selection.whole: true beside {why}"))
    tests = set(sel.tests)
    for check in report.checks:
        if check.id.startswith(HARNESS_CHECK_PREFIX) or check.id in tests:
            continue
        # A check a test recorded inside itself is `<test id>::<rule>`.
        if not any(check.id.startswith(f"{t}::") for t in tests):
            problems.append(("tampered", subject, f"check {check.id!r} is not one of the selected tests "
                                                  f"(selection.tests has {len(tests)})"))
            break
    paths = [a.split("::", 1)[0].rstrip("/").removeprefix("./") for a in sel.args]
    for test in sel.tests:
        file = test.split("::", 1)[0]
        if paths and not any(_inside(file, p) for p in paths):
            problems.append(("tampered", subject, f"selected test {test!r} lies outside the recorded "
                                                  f"arguments {sel.args}"))
            break
    return problems


def _inside(file: str, arg: str) -> bool:
    """Whether the test file `file` (relative to pytest's rootdir) lies under the argument `arg` (relative to
    where pytest ran, which may be a folder below the rootdir)."""
    if arg in ("", ".") or arg.startswith("/"):  # an absolute argument outside where pytest ran: not comparable
        return True
    return f"/{arg}/" in f"/{file}/" or file.endswith(f"/{arg}") or file == arg


def recomputed_slo(entry: LatencyEntry) -> list[SloVerdict] | None:
    """The SLO verdicts drawn again from the entry's figures and its SLO; None without an SLO."""
    if entry.slo is None:
        return None
    return evaluate_slo(entry.result.to_dict(), entry.slo)


def _latency(entry: LatencyEntry) -> list[Problem]:
    problems: list[Problem] = []
    key = entry.load_key
    r = entry.result
    lat = r.latency_ms
    values = [float(getattr(lat, name)) for name in _PERCENTILE_ORDER]
    for (a, va), (b, vb) in zip(zip(_PERCENTILE_ORDER, values, strict=True),
                                zip(_PERCENTILE_ORDER[1:], values[1:], strict=True), strict=False):
        if va > vb + _TOLERANCE:
            problems.append(("tampered", key, f"latency_ms.{a} {va:g} ms is above latency_ms.{b} {vb:g} ms"))
            break
    if r.ok > r.requests:
        problems.append(("tampered", key, f"ok {r.ok} is more than requests {r.requests}"))
    elif r.requests and not _close(r.error_rate, (r.requests - r.ok) / r.requests, _FRACTION_TOLERANCE):
        problems.append(("tampered", key, f"error_rate {r.error_rate:g} beside {r.requests - r.ok} failed of "
                                          f"{r.requests} requests ({(r.requests - r.ok) / r.requests:g})"))
    if r.requests and not _close(r.late_send_fraction, r.late_sends / r.requests, _FRACTION_TOLERANCE):
        problems.append(("tampered", key, f"late_send_fraction {r.late_send_fraction:g} beside {r.late_sends} "
                                          f"late of {r.requests} requests"))
    again = recomputed_slo(entry)
    if again is None:
        return problems
    recorded = {v.name: v for v in entry.slo_verdicts}
    for verdict in again:
        was = recorded.get(verdict.name)
        if was is None:
            if not verdict.ok:
                problems.append(("tampered", key, f"the SLO verdict {verdict.name} is missing; recomputed from "
                                                  f"the figures it fails: {verdict.reason}"))
        elif was.ok != verdict.ok or not _close(was.actual, verdict.actual):
            problems.append(("tampered", key, f"SLO verdict {verdict.name} says ok: {str(was.ok).lower()} "
                                              f"(actual {was.actual}) beside the figures: {verdict.reason}"))
    return problems


def _calm_client(step: SweepStep) -> bool:
    """Whether the step's figures show a load client well within both overload limits (checks/slo.py),
    by more than the rounding of the stored figures: a step that says `client_overloaded` beside them was
    edited."""
    late, busy = client_load(step.to_dict())
    return late < CLIENT_LATE_SEND_LIMIT - 1e-5 and busy < CLIENT_CPU_LIMIT - 1e-3


def _capacity(sweep: CapacityEntry) -> list[Problem]:
    from harness.load.sweep import bracket, counted

    key = f"{sweep.model} {sweep.protocol} capacity"
    problems: list[Problem] = []
    slo = sweep.slo
    for step in sweep.steps:
        over = [f"{p} {step.latency_ms.get(p, 0.0):g} ms > {slo[f'{p}_ms']:g} ms" for p in ("p50", "p95", "p99")
                if slo.get(f"{p}_ms") is not None and step.latency_ms.get(p, 0.0) > float(slo[f"{p}_ms"] or 0)
                + _TOLERANCE]
        limit = slo.get("max_error_rate")
        if limit is not None and step.error_rate > limit + 1e-9:
            over.append(f"error rate {step.error_rate:g} > {limit:g}")
        if step.meets_slo and over:
            problems.append(("tampered", key, f"the step at {step.offered_rate_rps:g} req/s says meets_slo: true "
                                              f"beside {over[0]}"))
            break
        if step.client_overloaded and (step.meets_slo or _calm_client(step)):
            problems.append(("tampered", key, f"the step at {step.offered_rate_rps:g} req/s says client_overloaded: "
                                              f"true beside a {'pass' if step.meets_slo else 'calm load client'}"))
            break
    lo, hi = bracket(counted(sweep.steps))
    if not _close(sweep.capacity_rps, lo or 0.0):
        problems.append(("tampered", key, f"capacity_rps {sweep.capacity_rps:g} beside its steps, whose highest "
                                          f"passing rate below the lowest miss is {lo or 0.0:g}"))
    if sweep.bounded != (hi is not None):
        problems.append(("tampered", key, f"bounded: {str(sweep.bounded).lower()} beside steps that "
                                          f"{'missed' if hi is not None else 'never missed'} the SLO"))
    return problems
