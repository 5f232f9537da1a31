"""Soak: run the e2e suites N times against one long-lived simulated cluster (`make soak`).

One `sim up` process plays an existing cluster. Every iteration runs `pytest suites/` against it
through the `existing` provider, then checks that
- the cluster is as it was before the first iteration (no namespace, pod, Seldon object, taint,
  label or capacity change left behind),
- the sim process holds no more open file descriptors or child processes than after iteration 1,
- the verdicts (check id -> status) are identical in every iteration.
Exit 0 when all hold, 1 otherwise; a table of the iterations is printed either way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.checks.leftovers import differences
from harness.config import load_profile
from harness.kube import Kube
from harness.testkit.helpers import capture_cluster_state
from tests.kit.simproc import ROOT, existing_profile_for, running_sim


def _children(pid: int) -> int:
    """Live descendants of `pid` (MLServer processes and their workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    for _ in range(64):  # bounded depth
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        if not frontier:
            break
        found |= frontier
    return len(found)


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _verdicts(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {c["id"]: c["status"] for c in data["checks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--profile", default="profiles/sim.yaml", help="a sim profile (its cluster is started once)")
    parser.add_argument("--suites", nargs="*", default=["suites/"], help="what to run each iteration")
    parser.add_argument("--out", default="reports/soak", help="reports of every iteration")
    parser.add_argument("--iteration-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, running_sim(Path(args.profile), Path(tmp)) as sim:
        existing = existing_profile_for(Path(args.profile), sim.kubeconfig, Path(tmp) / "existing.yaml")
        profile = load_profile(existing)
        kube = Kube.from_kubeconfig(sim.kubeconfig, None, profile.timeouts)
        before = capture_cluster_state(kube, profile.seldon.namespace)
        first: dict[str, str] | None = None
        baseline_fds = baseline_children = -1
        for i in range(1, args.iterations + 1):
            report_dir = out / f"iteration-{i:02d}"
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", *args.suites, "--profile", str(existing), "--report-dir",
                 str(report_dir), "-q", "-p", "no:cacheprovider", "--run-id", f"soak{i}"],
                capture_output=True, text=True, timeout=args.iteration_timeout, cwd=ROOT,
            )
            seconds = time.monotonic() - started
            verdicts = _verdicts(report_dir / "report.json")
            leftovers = differences(before, capture_cluster_state(kube, profile.seldon.namespace))
            fds, children = _fds(sim.process.pid), _children(sim.process.pid)
            if i == 1:
                first, baseline_fds, baseline_children = verdicts, fds, children
            changed = sorted(k for k in set(verdicts) | set(first or {}) if verdicts.get(k) != (first or {}).get(k))
            counts = {s: list(verdicts.values()).count(s) for s in ("pass", "fail", "skip", "error")}
            rows.append(f"{i:>3}  {seconds:7.1f}s  exit {proc.returncode}  {counts}  fds {fds}  children {children}  "
                        f"leftovers {len(leftovers)}  changed verdicts {len(changed)}")
            print(rows[-1], flush=True)
            problems += [f"iteration {i}: {x}" for x in leftovers]
            problems += [f"iteration {i}: verdict of {k} changed: {(first or {}).get(k)} -> {verdicts.get(k)}"
                         for k in changed]
            if fds > baseline_fds + 8:
                problems.append(f"iteration {i}: sim open file descriptors grew {baseline_fds} -> {fds}")
            if children > baseline_children:
                problems.append(f"iteration {i}: sim child processes grew {baseline_children} -> {children}")
            if sim.process.poll() is not None:
                problems.append(f"iteration {i}: the simulated cluster exited with {sim.process.returncode}")
                break
    print("\n".join(["", "soak summary:", *rows]))
    if problems:
        print("\n".join(["", f"{len(problems)} problem(s):", *problems]))
        return 1
    print(f"\nsoak: {args.iterations} iterations, no leftovers, no growth, identical verdicts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
