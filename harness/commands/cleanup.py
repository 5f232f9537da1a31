"""`python -m harness cleanup`: the command line of `harness.cleanup` (which runs are dead, what each
left), reading the profile and the kubeconfig and printing one line per run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cleanup import clean_run, dead_runs, run_states
from harness.config import load_profile
from harness.errors import UsageError
from harness.kube import Kube
from harness.kube.lease import LEASE_API, LEASE_NAMESPACE, run_lease_name
from harness.kube.retry import KubeApiError


def _kubeconfig(args: argparse.Namespace, profile: Any) -> Path | None:
    """The kubeconfig file given, or None: kubectl's rules ($KUBECONFIG, every file of the list, in
    memory; else ~/.kube/config), as the run itself found it."""
    if args.kubeconfig:
        return Path(args.kubeconfig)
    if profile.cluster.kubeconfig:
        return Path(profile.cluster.kubeconfig)
    if profile.cluster.provider == "sim":
        raise UsageError(f"{profile.source}: a sim cluster lives only as long as its run; pass --kubeconfig of the "
                         "`sim up` to clean")
    return None


def run_cleanup_command(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    kube = Kube.from_kubeconfig(_kubeconfig(args, profile), args.context or profile.cluster.context,
                                profile.timeouts)
    try:
        if args.run_id:
            state = run_states(kube).get(args.run_id)
            if state is None and kube.get(LEASE_API, "Lease", run_lease_name(args.run_id), LEASE_NAMESPACE):
                raise UsageError(f"cleanup: run {args.run_id} is alive: its Lease {LEASE_NAMESPACE}/"
                                 f"{run_lease_name(args.run_id)} is being renewed; stop that run first (its "
                                 "own cleanup then runs), or wait until its Lease expires")
            runs = {args.run_id: state or "named with --run-id"}
        else:
            runs = dead_runs(kube)
        if not runs:
            print("cleanup: no dead harness run found (name one with --run-id to clean it anyway)")
            return 0
        status = 0
        for run_id, why in sorted(runs.items()):
            done, problems = clean_run(kube, run_id, profile.timeouts.delete_s)
            print(f"cleanup: run {run_id} ({why}): " + ("; ".join(done) if done else "nothing left"))
            for problem in problems:
                print(f"cleanup: run {run_id}: {problem}")
                status = 1
        return status
    except KubeApiError as exc:
        raise UsageError(f"cleanup: the cluster answered: {exc}") from None
    finally:
        kube.close()
