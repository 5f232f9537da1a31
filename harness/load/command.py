"""`python -m harness load`: the latency engine on its own, against any Open Inference Protocol endpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.load.engine import run_load as run_engine
from harness.load.spec import DEFAULT_INPUT, LoadResult, LoadSpec, validate_inputs


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


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    if args.poisson and args.rate is None:
        raise UsageError("--poisson: needs --rate (open loop)")
    inputs = read_inputs(args.input) if args.input else [dict(DEFAULT_INPUT)]
    duration = float(args.duration)
    return LoadSpec(
        endpoint=args.endpoint,
        model=args.model,
        protocol=args.protocol,
        mode="open" if args.rate is not None else "closed",
        rate=args.rate,
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
        + "  ".join(f"{k} {lat.get(k, 0.0):.2f}" for k in ("p50", "p90", "p95", "p99", "p99_9", "max")),
        f"  client CPU {result.client_cpu_ms_per_request:.3f} ms/request",
    ]
    if result.errors:
        lines.append("  errors  " + ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())))
    if not result.complete:
        lines.append(f"  INCOMPLETE: {result.failure}")
    return lines


def run_load(args: argparse.Namespace) -> int:
    """CLI handler: 0 when the run completed, 1 when it did not (server gone), 2 for bad input."""
    out = Path(args.json)
    if out.exists() and out.is_dir():
        raise UsageError(f"--json {out}: is a directory, expected a file path")
    spec = spec_from_args(args)
    if args.engine == "perf_analyzer":
        from harness.load.perf_analyzer import run_perf_analyzer

        result = run_perf_analyzer(spec)
    else:
        result = run_engine(spec)
    try:
        write_atomic(out, json.dumps(result.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"--json {out}: cannot write ({exc.strerror or exc})") from None
    for line in summary_lines(result):
        print(line)
    print(f"  result written to {out}")
    sys.stdout.flush()
    return 0 if result.complete else 1
