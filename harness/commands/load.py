"""`python -m harness load`: the latency engine on its own, against any Open Inference Protocol endpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.checks.slo import evaluate_slo, failed
from harness.config import Slo
from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.load.answers import Expected, expected_from_outputs
from harness.load.engine import run_load as run_engine
from harness.load.result import LoadResult
from harness.load.spec import DEFAULT_INPUT, LoadSpec, validate_inputs
from harness.load.sweep import SweepPlan, SweepResult, run_sweep

SWEEP_STEP_S = 3.0


def read_inputs(path: str) -> list[dict[str, Any]]:
    """`--input FILE`: JSON with an `inputs` list (an Open Inference Protocol request body)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--input {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--input {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise UsageError(f"--input {path}: expected a JSON object with an 'inputs' list")
    return validate_inputs(data["inputs"], f"--input {path}")


def read_expected(path: str) -> tuple[Expected, ...]:
    """`--expected-output FILE`: JSON with an `outputs` list of `{name, data}` (a response body will do)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--expected-output {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--expected-output {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--expected-output {path}: expected a JSON object with an 'outputs' list")
    try:
        return expected_from_outputs(data.get("outputs"), f"--expected-output {path}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def slo_from_args(args: argparse.Namespace) -> Slo:
    if args.slo_max_error_rate > 1:
        raise UsageError(f"--slo-max-error-rate: expected a fraction in [0, 1], got {args.slo_max_error_rate!r}")
    return Slo(p50_ms=args.slo_p50_ms, p95_ms=args.slo_p95_ms, p99_ms=args.slo_p99_ms,
               max_error_rate=args.slo_max_error_rate)


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    if args.poisson and args.rate is None:
        raise UsageError("--poisson: needs --rate (open loop)")
    sweep = bool(getattr(args, "sweep", False))
    if not sweep and args.rate is None and args.concurrency is None:
        raise UsageError("load: expected one of --rate R (open loop), --concurrency N (closed loop) or --sweep")
    if args.duration is None and not sweep:
        raise UsageError("--duration: expected the measured seconds per trial")
    inputs = read_inputs(args.input) if args.input else [dict(DEFAULT_INPUT)]
    expected = read_expected(args.expected_output) if args.expected_output else ()
    duration = float(args.duration) if args.duration is not None else SWEEP_STEP_S
    return LoadSpec(
        endpoint=args.endpoint,
        model=args.model,
        protocol=args.protocol,
        mode="open" if args.rate is not None or sweep else "closed",
        rate=args.rate if not sweep else float(args.sweep_start_rate or 20.0),
        concurrency=args.concurrency,
        poisson=bool(args.poisson),
        duration_s=duration,
        warmup_s=float(args.warmup),
        window_s=args.window,
        tolerance=float(args.tolerance),
        max_trials=int(args.max_trials),
        workers=args.workers,
        inputs=inputs,
        timeout_s=float(args.timeout),
        expected=expected,
        check_every=int(args.check_every),
    ).validate()


def summary_lines(result: LoadResult) -> list[str]:
    """The one-screen summary (plain text; the JSON file has everything)."""
    lat = result.latency_ms
    if result.mode == "open":
        load = f"open loop {result.offered_rate_rps:g} req/s{' (Poisson)' if result.poisson else ''}"
    else:
        load = f"closed loop, concurrency {result.concurrency}"
    lines = [
        f"{result.engine}: {load} over {result.protocol} to {result.endpoint}, model {result.model}",
        f"  measured {result.duration_s:.1f} s after {result.warmup_s:g} s warm-up, {result.workers} worker(s), "
        f"{result.trials} trial(s), {'stable' if result.stable else 'NOT stable'}",
        f"  requests {result.requests}  ok {result.ok}  error rate {result.error_rate:.2%}",
        f"  achieved {result.achieved_rate_rps:.1f} req/s  throughput {result.throughput_rps:.1f} ok/s"
        + (f"  late sends {result.late_sends} ({result.late_send_fraction:.2%})" if result.mode == "open" else ""),
        "  latency ms  "
        + "  ".join(f"{k} {getattr(lat, k):.2f}" for k in ("p50", "p90", "p95", "p99", "p99_9", "max")),
        f"  client CPU {result.client_cpu_ms_per_request:.3f} ms/request",
    ]
    if result.errors:
        lines.append("  errors  " + ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())))
    source = result.source
    if source is not None and source.where == "cluster":
        lines.append(f"  load from the cluster: {source.pods} pod(s) of Job {source.namespace}/{source.job}, "
                     f"merged histogram {source.recorded} latencies")
        for g in source.generators:
            lines.append(f"    pod {g.index} {g.pod} on {g.node or '?'}: {g.requests} requests, ok {g.ok}, "
                         f"late {g.late_sends}, p50 {g.p50_ms:.2f} ms, p99 {g.p99_ms:.2f} ms, "
                         f"CPU {g.client_cpu_ms_per_request:.3f} ms/request"
                         + (f", FAILED: {g.failure}" if g.failure else ""))
    if not result.complete:
        lines.append(f"  INCOMPLETE: {result.failure}")
    return lines


def sweep_lines(sweep: SweepResult) -> list[str]:
    slo = ", ".join(f"{k} {v:g}" for k, v in sweep.slo.items() if v is not None)
    lines = [f"sweep over {sweep.protocol} to {sweep.endpoint}, model {sweep.model}, SLO {slo}",
             "  step  offered/s  achieved/s    p50 ms    p95 ms    p99 ms  errors  goodput  verdict"]
    for i, step in enumerate(sweep.steps, 1):
        lat = step.latency_ms
        lines.append(
            f"  {i:>4}  {step.offered_rate_rps:>9.1f}  {step.achieved_rate_rps:>10.1f}  {lat.get('p50', 0):>8.2f}  "
            f"{lat.get('p95', 0):>8.2f}  {lat.get('p99', 0):>8.2f}  {step.error_rate:>6.1%}  "
            f"{step.goodput_fraction:>7.1%}  {'meets SLO' if step.meets_slo else 'misses: ' + '; '.join(step.reasons)}")
    lines.append(f"  capacity at SLO: {sweep.capacity_rps:.1f} req/s ({sweep.stop_reason}; "
                 f"{len(sweep.steps)} steps in {sweep.elapsed_s:.1f} s of a {sweep.budget_s:g} s budget)")
    if not sweep.complete:
        lines.append(f"  INCOMPLETE: {sweep.failure}")
    return lines


def _write(out: Path, data: dict[str, Any]) -> None:
    try:
        write_atomic(out, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"--json {out}: cannot write ({exc.strerror or exc})") from None


def json_path(args: argparse.Namespace) -> Path:
    out = Path(args.json)
    if out.exists() and out.is_dir():
        raise UsageError(f"--json {out}: is a directory, expected a file path")
    return out


def write_result(out: Path, result: LoadResult, slo: Slo) -> int:
    """Write the JSON, print the summary and the SLO misses; 0 when complete within the SLO, else 1."""
    _write(out, result.to_dict())
    for line in summary_lines(result):
        print(line)
    verdicts = failed(evaluate_slo(result.to_dict(), slo))
    for verdict in verdicts:
        print(f"  SLO MISSED: {verdict.reason}")
    print(f"  result written to {out}")
    sys.stdout.flush()
    return 0 if result.complete and not verdicts else 1


def run_load(args: argparse.Namespace) -> int:
    """CLI handler: 0 when the run completed within the SLO, 1 when it did not (errors above the
    SLO's limit, a latency SLO missed, a server gone, no capacity at the SLO), 2 for bad input."""
    out = json_path(args)
    for flag in ("pods", "kubeconfig", "context", "profile", "image", "start_margin"):
        if getattr(args, flag, None) is not None:
            raise UsageError(f"--{flag.replace('_', '-')}: only with --in-cluster")
    if not args.endpoint:
        raise UsageError("--endpoint: expected the server's address (http://host:port, or host:port for gRPC)")
    spec = spec_from_args(args)
    slo = slo_from_args(args)
    if getattr(args, "sweep", False):
        if args.engine != "harness":
            raise UsageError("--sweep: runs with --engine harness only")
        # An explicit --duration is the step length as given; by default a step also lasts long
        # enough for SweepPlan.min_requests requests.
        resolution = getattr(args, "sweep_resolution", None)
        plan = SweepPlan(start_rate=float(args.sweep_start_rate or 20.0), budget_s=float(args.sweep_budget),
                         resolution=SweepPlan.resolution if resolution is None else float(resolution),
                         step_s=spec.duration_s, warmup_s=min(spec.warmup_s, 1.0),
                         min_requests=0 if args.duration is not None else SweepPlan.min_requests).validate()
        sweep = run_sweep(spec, slo, plan, progress=lambda line: print(line, flush=True))
        _write(out, sweep.to_dict())
        for line in sweep_lines(sweep):
            print(line)
        print(f"  result written to {out}")
        sys.stdout.flush()
        return 0 if sweep.complete and sweep.capacity_rps > 0 else 1
    if args.engine == "perf_analyzer":
        from harness.load.perf_analyzer import run_perf_analyzer

        result = run_perf_analyzer(spec)
    else:
        result = run_engine(spec)
    return write_result(out, result, slo)
