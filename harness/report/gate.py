"""The release gate: a pure verdict over a run report and an optional baseline.

Rules (documented in docs/report.md, "The release gate"):
- evidence from the simulated cluster is refused unless `allow_simulated` (in the report or the
  baseline: a simulated baseline says nothing about a real cluster's latency);
- every check must pass; `fail` and `error` fail the gate, and so does `skip` unless its suite is in
  `allow_skip` ("*" allows every skip): a skipped GPU check proved nothing, so a release must not
  count it as passed by default;
- a report with no checks, or one whose run never finished, fails (nothing or only part was proven);
- incomplete evidence is refused (`harness.report.completeness`): an interrupted run (signal, -x),
  a partial selection (-k, -m, single tests, deselection), a suite that did not run, a selected test
  without a verdict, a malformed run id; a skip is accepted only when the reviewed allow-list file
  (`allowed-skips.yaml`, `--allow-list`) lists it for the report's profile, with a reason;
- every latency result must be complete and meet its SLO verdicts;
- against a baseline, p50/p95/p99 of every model measured at the same load (model, protocol, loop,
  offered rate or concurrency) regress only when both hold: the growth exceeds the allowance
  (`max_regression` of the baseline, 0.10 = 10 %, but at least `min_change_ms`; the bound itself
  passes), and it exceeds both runs' measurement uncertainty combined (the root sum of squares of
  the baseline's upper and the current run's lower 99 % half-widths; harness/report/uncertainty.py).
  So identical runs do not regress on sampling noise, and a slowdown the samples resolve does. A
  baseline measurement with no counterpart in the report fails, because an unmeasured model cannot
  be shown not to have regressed.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from harness.checks.slo import CLIENT_OVERLOADED
from harness.report.allowlist import AllowList
from harness.report.completeness import completeness_problems
from harness.report.consistency import contradictions, recomputed_slo
from harness.report.model import CapacityEntry, LatencyEntry, RunReport
from harness.report.uncertainty import Interval, percentile_interval

PERCENTILES = ("p50", "p95", "p99")
# Below this a change is not a regression however certain: sub-millisecond shifts are scheduler and
# loopback jitter, not the model (docs/report.md, "Comparing with a baseline").
DEFAULT_MIN_CHANGE_MS = 0.5
# Float noise must not turn "exactly at the bound" into a failure.
_EPSILON = 1e-9


@dataclass(frozen=True)
class GateFailure:
    # refused | unsigned | tampered | interrupted | partial | empty | unfinished | cleanup | check | skip
    # | incomplete | slo | inconclusive | regression | missing | capacity (docs/report.md lists each)
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True)
class Comparison:
    """One percentile of one model at one load, against the baseline."""

    load: str
    percentile: str
    baseline_ms: float
    current_ms: float
    change: float  # fraction: 0.25 = 25 % slower
    limit: float
    ok: bool
    # The statistical part of the verdict: each run's 99 % interval and the absolute floor.
    baseline_interval: Interval | None = None
    current_interval: Interval | None = None
    min_change_ms: float = 0.0
    within_noise: bool = False  # grew past the allowance, but not past the runs' uncertainty
    noise_ms: float = 0.0  # the two runs' combined 99 % uncertainty of the difference


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    refused: bool
    simulated: bool
    failures: tuple[GateFailure, ...]
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _latest_by_load(entries: list[LatencyEntry], notes: list[str], which: str) -> dict[str, LatencyEntry]:
    out: dict[str, LatencyEntry] = {}
    for entry in entries:
        if entry.load_key in out:
            notes.append(f"{which} measured {entry.load_key} more than once; the last measurement counts")
        out[entry.load_key] = entry
    return out


def _check_failures(report: RunReport, allow_skip: Collection[str], allow_list: AllowList | None,
                    notes: list[str]) -> list[GateFailure]:
    failures: list[GateFailure] = []
    skip_all = "*" in allow_skip
    for check in report.checks:
        subject = f"{check.suite}: {check.name}"
        if check.id == CLEANUP_CHECK and check.status != "pass":
            # What the run created may still be on the cluster: not a failed test but a run that did not
            # leave the cluster as it found it, so its evidence is refused (and `harness cleanup` removes it).
            failures.append(GateFailure("cleanup", subject, f"the run's cleanup left something behind: "
                                                            f"{check.reason or 'no reason given'}"))
        elif check.status in ("fail", "error"):
            failures.append(GateFailure("check", subject, f"{check.status}: {check.reason or 'no reason given'}"))
        elif check.status == "skip":
            listed_any = allow_list.listing(report.profile.name, check.name) if allow_list is not None else ()
            if allow_list is not None and (listed := allow_list.allowing(report.profile.name, check.name,
                                                                         check.reason)):
                notes.append(f"{subject}: skip allowed by {allow_list.source}: {listed.reason}")
            elif listed_any and allow_list is not None:
                # Listed, but for another reason: the eviction test that found no free node under
                # `destructive: true` is not the skip the reviewers allowed (the opt-out).
                expected = " or ".join(repr(e.skip_reason) for e in listed_any)
                failures.append(GateFailure(
                    "skip", subject,
                    f"skipped for a reason {allow_list.source} does not allow: {check.reason or 'no reason given'!r} "
                    f"matches none of the listed skip_reason patterns ({expected})",
                ))
            elif not (skip_all or check.suite in allow_skip):
                failures.append(GateFailure(
                    "skip", subject,
                    f"skipped ({check.reason or 'no reason given'}); a skipped check proves nothing unless the "
                    f"reviewed allow-list (allowed-skips.yaml) lists it for profile {report.profile.name}",
                ))
    return failures


def _latency_failures(report: RunReport) -> list[GateFailure]:
    failures: list[GateFailure] = []
    for entry in report.latency:
        if not entry.result.complete:
            failures.append(GateFailure(
                "incomplete", entry.load_key, f"load run incomplete: {entry.result.failure or 'no reason given'}"
            ))
        # The verdicts drawn again from the figures and the SLO the report embeds (a recorded verdict
        # that disagrees is refused by `contradictions`); the recorded ones only where no SLO is kept.
        verdicts = recomputed_slo(entry)
        for slo in entry.slo_verdicts if verdicts is None else verdicts:
            if not slo.ok and slo.name != "complete":
                kind = "inconclusive" if slo.name == CLIENT_OVERLOADED else "slo"
                failures.append(GateFailure(kind, entry.load_key, slo.reason))
    return failures


def _regressions(
    report: RunReport, baseline: RunReport, max_regression: float, notes: list[str],
    min_change_ms: float = DEFAULT_MIN_CHANGE_MS,
) -> tuple[list[Comparison], list[GateFailure]]:
    current = _latest_by_load(report.latency, notes, "the report")
    base = _latest_by_load(baseline.latency, notes, "the baseline")
    comparisons: list[Comparison] = []
    failures: list[GateFailure] = []
    for key, old in sorted(base.items()):
        new = current.get(key)
        if new is None:
            failures.append(GateFailure(
                "missing", key, "the baseline measured this model at this load; the report did not"
            ))
            continue
        for pct in PERCENTILES:
            before = float(getattr(old.result.latency_ms, pct))
            after = float(getattr(new.result.latency_ms, pct))
            if before <= 0:
                notes.append(f"{key} {pct}: baseline is {before:g} ms, no ratio to compare")
                continue
            change = after / before - 1.0
            was, now = percentile_interval(old.result, pct), percentile_interval(new.result, pct)
            allowance = max(min_change_ms, max_regression * before)
            # Independent runs: the uncertainties of the two percentiles add in quadrature.
            noise = math.hypot(was.high - before, after - now.low)
            exceeds = after - before > allowance + _EPSILON
            beyond_noise = after - before > noise + _EPSILON
            ok = not (exceeds and beyond_noise)
            comparisons.append(Comparison(key, pct, before, after, change, max_regression, ok,
                                          baseline_interval=was, current_interval=now, min_change_ms=min_change_ms,
                                          within_noise=exceeds and not beyond_noise, noise_ms=noise))
            if not ok:
                failures.append(GateFailure(
                    "regression", f"{key} {pct}",
                    f"{before:.2f} ms -> {after:.2f} ms (+{change:.1%}, bound {max_regression:.1%} and "
                    f"{min_change_ms:g} ms), more than the runs' combined uncertainty ({noise:.2f} ms; 99% "
                    f"intervals {was.describe()} and {now.describe()} ms)",
                ))
    for key in sorted(set(current) - set(base)):
        notes.append(f"{key}: not in the baseline, compared with SLOs only")
    return comparisons, failures


# The check the harness records when the session's cleanup left objects, the Lease or a node change.
CLEANUP_CHECK = "harness::cleanup"

# `--max-capacity-drop`: capacity at SLO may fall by this fraction before the gate fails.
DEFAULT_MAX_CAPACITY_DROP = 0.10


def _capacity_key(entry: CapacityEntry) -> str:
    slo = ", ".join(f"{k} {v:g}" for k, v in sorted(entry.slo.items()) if v is not None)
    return f"{entry.model} {entry.protocol} capacity at SLO ({slo})"


def _capacity_failures(report: RunReport, notes: list[str]) -> list[GateFailure]:
    failures = [GateFailure("incomplete", _capacity_key(e), f"capacity sweep incomplete: {e.failure or 'no reason'}")
                for e in report.capacity if not e.complete]
    for entry in report.capacity:
        if not entry.bounded and entry.complete:
            notes.append(f"{_capacity_key(entry)}: >= {entry.capacity_rps:.1f} req/s (not bounded within the "
                         f"budget: no step missed the SLO; {entry.stop_reason})")
        elif (why := _client_bound(entry)) is not None:
            # Not a failure by itself (the capacity is at least what passed), but not a bound either.
            notes.append(f"{_capacity_key(entry)}: >= {entry.capacity_rps:.1f} req/s; the step that bounds it "
                         f"({_lowest_failing_rate(entry):g} req/s) is {why}")
    return failures


def _client_bound(entry: CapacityEntry) -> str | None:
    """The `inconclusive: ...` reason of the step that bounds the capacity, when the client was overloaded."""
    upper = _lowest_failing_rate(entry)
    # the miss that counts at that rate: the last one (a first inconclusive miss there was measured again)
    step = next((s for s in reversed(entry.steps) if not s.meets_slo and s.offered_rate_rps == upper), None)
    return next((r for r in step.reasons if r.startswith("inconclusive")), None) if step is not None else None


def _capacity_drops(report: RunReport, baseline: RunReport, max_drop: float,
                    notes: list[str]) -> list[GateFailure]:
    """Capacity at SLO against the baseline's, per model, protocol and SLO: a drop beyond `max_drop`
    fails; a model the baseline swept and the report did not fails too (it cannot be shown not to
    have dropped)."""
    current = {_capacity_key(e): e for e in report.capacity}
    failures: list[GateFailure] = []
    for old in baseline.capacity:
        key = _capacity_key(old)
        new = current.get(key)
        if new is None:
            failures.append(GateFailure("missing", key, "the baseline swept this model's capacity; the report did not"))
            continue
        before, after = old.capacity_rps, new.capacity_rps
        if before <= 0:
            notes.append(f"{key}: baseline capacity is 0, no ratio to compare")
            continue
        drop = 1.0 - after / before
        # A sweep brackets its capacity: the highest passing rate below the lowest failing one. A drop is
        # shown only when the new run MISSED the SLO at a rate below the bound (the baseline held its
        # capacity, so even the most generous reading of the new run lies below it); a drop that only the
        # sweep's own resolution could explain is not a regression.
        upper = _lowest_failing_rate(new)
        bound = before * (1.0 - max_drop)
        bracket = f"[{after:.1f}, {upper:.1f})" if upper is not None else f">= {after:.1f} (never missed the SLO)"
        if upper is not None and upper < bound - _EPSILON and (why := _client_bound(new)) is not None:
            failures.append(GateFailure(
                "inconclusive", key, f"{before:.1f} -> {after:.1f} req/s (bound {max_drop:.0%}): the SLO was missed "
                                     f"at {upper:.1f} req/s, below {bound:.1f}, but that step is {why}"))
        elif upper is not None and upper < bound - _EPSILON:
            failures.append(GateFailure(
                "capacity", key, f"{before:.1f} -> {after:.1f} req/s (-{drop:.1%}, bound {max_drop:.0%}): the "
                                 f"SLO was missed at {upper:.1f} req/s, below {bound:.1f}; capacity in {bracket}"))
        else:
            notes.append(f"{key}: {before:.1f} -> {after:.1f} req/s ({-drop:+.1%}); capacity in {bracket}, "
                         f"not shown below {bound:.1f} (bound {max_drop:.0%})")
    return failures


def _lowest_failing_rate(entry: CapacityEntry) -> float | None:
    """The lowest offered rate at which the sweep missed the SLO: the capacity's upper bound (the misses
    that count: `harness.load.sweep.counted`)."""
    from harness.load.sweep import bracket, counted

    return bracket(counted(entry.steps))[1]


def gate(
    report: RunReport,
    baseline: RunReport | None,
    max_regression: float,
    allow_simulated: bool,
    allow_skip: Collection[str] = (),
    allow_list: AllowList | None = None,
    min_change_ms: float = DEFAULT_MIN_CHANGE_MS,
    max_capacity_drop: float = DEFAULT_MAX_CAPACITY_DROP,
    signature_problem: str | None = None,
) -> GateVerdict:
    """Judge `report` for a release. Pure: no I/O, same inputs give the same verdict.

    `signature_problem` is why the report's signature did not verify (`harness.report.signature.verify`,
    run by the caller under `--require-signature`); it refuses the report."""
    if max_regression < 0:
        raise ValueError(f"max_regression must be >= 0, got {max_regression}")
    if min_change_ms < 0:
        raise ValueError(f"min_change_ms must be >= 0, got {min_change_ms}")
    notes: list[str] = []
    failures: list[GateFailure] = []
    if signature_problem is not None:
        failures.append(GateFailure("unsigned", f"run {report.run_id}", signature_problem))
    refused = report.simulated and not allow_simulated
    if refused:
        failures.append(GateFailure(
            "refused", f"run {report.run_id}",
            f"evidence is from a SIMULATED CLUSTER (provider {report.provider}); a release needs a real cluster",
        ))
    if baseline is not None and baseline.simulated and not report.simulated and not allow_simulated:
        failures.append(GateFailure(
            "refused", f"baseline run {baseline.run_id}",
            "the baseline is from a SIMULATED CLUSTER; its latencies say nothing about a real cluster",
        ))
    failures.extend(GateFailure(kind, subject, detail) for kind, subject, detail in completeness_problems(report))
    failures.extend(GateFailure(kind, subject, detail) for kind, subject, detail in contradictions(report))
    if report.finished is None:
        failures.append(GateFailure(
            "unfinished", f"run {report.run_id}", "the run never finished; evidence is partial"
        ))
    if not report.checks:
        failures.append(GateFailure("empty", f"run {report.run_id}", "the report holds no checks: nothing was proven"))
    failures.extend(_check_failures(report, allow_skip, allow_list, notes))
    failures.extend(_latency_failures(report))
    failures.extend(_capacity_failures(report, notes))
    comparisons: list[Comparison] = []
    if baseline is not None:
        comparisons, regressions = _regressions(report, baseline, max_regression, notes, min_change_ms)
        failures.extend(regressions)
        failures.extend(_capacity_drops(report, baseline, max_capacity_drop, notes))
    else:
        notes.append("no baseline given: latency judged against SLOs only")
    return GateVerdict(
        passed=not failures,
        refused=refused,
        simulated=report.simulated,
        failures=tuple(failures),
        comparisons=tuple(comparisons),
        notes=tuple(notes),
    )


# Failures that make the evidence unusable, whatever the checks say: the first line says REFUSED and why,
# the first kind of this list found deciding the wording.
REFUSAL_KINDS = {
    "unsigned": "unverified evidence",
    "tampered": "contradictory evidence",
    "interrupted": "incomplete evidence",
    "partial": "incomplete evidence",
    "unfinished": "incomplete evidence",
    "empty": "incomplete evidence",
    "cleanup": "the run left the cluster changed",
}

# A table row stays one line: check reasons can hold whole pytest failure reports.
DETAIL_WIDTH = 200


def one_line(text: str, width: int = DETAIL_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    cells = [header, *[tuple(one_line(c) for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def _with_interval(value: float, interval: Interval | None) -> str:
    return f"{value:.2f}" if interval is None else f"{value:.2f} {interval.describe()}"


def format_verdict(verdict: GateVerdict, report_name: str) -> str:
    """Human-readable verdict; the first line alone says pass, fail or refused (and SIMULATED)."""
    n = len(verdict.failures)
    problems = f"{n} problem{'s' if n != 1 else ''}"
    if verdict.refused:
        first = (
            f"REFUSED: {report_name} is evidence from a SIMULATED CLUSTER, which cannot release anything "
            f"(--allow-simulated judges it anyway); {problems}"
        )
    elif (incomplete := next((f for kind in REFUSAL_KINDS for f in verdict.failures if f.kind == kind),
                             None)) is not None:
        first = f"REFUSED: {report_name}: {REFUSAL_KINDS[incomplete.kind]}: {one_line(incomplete.detail)}; {problems}"
    elif verdict.passed:
        first = f"PASS: {report_name}"
    else:
        first = f"FAIL: {report_name}: {problems}"
    if verdict.simulated and not verdict.refused:
        first = f"SIMULATED CLUSTER (accepted with --allow-simulated): {first}"
    lines = [first]
    if verdict.failures:
        lines.append("")
        lines += _table(
            ("KIND", "SUBJECT", "DETAIL"), [(f.kind, f.subject, f.detail) for f in verdict.failures]
        )
    if verdict.comparisons:
        lines.append("")
        lines += _table(
            ("LOAD", "PCT", "BASELINE MS", "CURRENT MS", "CHANGE", "BOUND", "VERDICT"),
            [
                (c.load, c.percentile, _with_interval(c.baseline_ms, c.baseline_interval),
                 _with_interval(c.current_ms, c.current_interval), f"{c.change:+.1%}",
                 f"{c.limit:.1%}" + (f", {c.min_change_ms:g} ms" if c.min_change_ms else ""),
                 "REGRESSED" if not c.ok else "ok (within noise)" if c.within_noise else "ok")
                for c in verdict.comparisons
            ],
        )
        lines.append("(99% intervals in brackets: a percentile regresses only when it grew past the bound and "
                     "by more than both runs' uncertainty combined; docs/report.md)")
    if verdict.notes:
        lines.append("")
        lines += [f"note: {note}" for note in verdict.notes]
    return "\n".join(lines) + "\n"
