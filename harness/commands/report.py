"""`python -m harness gate` and `python -m harness report`.

Exit codes: 0 pass, 1 the gate failed or refused simulated evidence, 2 unusable input (raised as
`UsageError`, printed as one line by the CLI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import UsageError
from harness.report.allowlist import load_allow_list
from harness.report.gate import DEFAULT_MAX_CAPACITY_DROP, DEFAULT_MIN_CHANGE_MS, format_verdict, gate
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.model import load_report
from harness.report.outputs import write_text
from harness.report.signature import KEY_ENV, KEY_FILE_ENV, load_key, signature_path, verify
from harness.report.text import printable, summary_text


def _allow_skip(args: argparse.Namespace) -> list[str]:
    # `--allow-skip SUITE` (repeatable) when the CLI offers it; older parsers simply lack the flag.
    raw = getattr(args, "allow_skip", None) or []
    return [s for item in raw for s in str(item).split(",") if s]


def _signature_problem(args: argparse.Namespace) -> str | None:
    """Why a signature does not verify, under `--require-signature` (or where a key and a signature are
    both there: a signature is never ignored); None when all verify or none is asked for. The baseline is
    held to the same rule as the report: it comes from an earlier run's artifact, and a doctored
    baseline (slower figures, a lower capacity) would let a regression through as surely as a doctored
    report."""
    required = bool(getattr(args, "require_signature", False))
    key = load_key(getattr(args, "key_file", None))
    if key is None:
        if required:
            raise UsageError(f"--require-signature: no signing key: give --key-file or set ${KEY_FILE_ENV} "
                             f"or ${KEY_ENV}")
        return None
    problems = []
    for label, given in (("", args.report), ("the baseline: ", getattr(args, "baseline", None))):
        if not given:
            continue
        path = Path(given)
        if not required and not signature_path(path).exists():
            continue
        problem = verify(path, key)
        if problem is not None:
            problems.append(label + problem)
    return "; ".join(problems) or None


def run_gate(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    baseline = load_report(args.baseline) if args.baseline else None
    raw_list = getattr(args, "allow_list", None)
    allow_list = load_allow_list(raw_list) if raw_list else None
    verdict = gate(report, baseline, float(args.max_regression), bool(args.allow_simulated), _allow_skip(args),
                   allow_list=allow_list,
                   min_change_ms=float(getattr(args, "min_change_ms", DEFAULT_MIN_CHANGE_MS)),
                   max_capacity_drop=float(getattr(args, "max_capacity_drop", DEFAULT_MAX_CAPACITY_DROP)),
                   signature_problem=_signature_problem(args))
    # A report's strings reach the terminal: control sequences in them are shown, never acted on.
    sys.stdout.write(printable(format_verdict(verdict, str(args.report))))
    sys.stdout.flush()
    return verdict.exit_code


def run_report(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    written = []
    if args.html:
        written.append(f"HTML report written to {write_text(Path(args.html), render_html(report))}")
    if args.junit:
        written.append(f"JUnit XML written to {write_text(Path(args.junit), render_junit(report))}")
    sys.stdout.write(printable(summary_text(report)))
    sys.stdout.write(printable("".join(f"{line}\n" for line in written)))
    return 0
